-- The trigger that queues transient failures as soon as the application writes them,
-- on the venues table (venue_images.venues_table, default public.venues) and its images
-- column. Idempotent; run it again after changing venue_images.venues_table or
-- images_column.
--
-- No role gets rights on the table: the extension's functions read and write it as the
-- table's owner, inside a security-restricted operation (as PostgreSQL's maintenance
-- commands do), so the application's own triggers, policies and index functions run as
-- the application, never with the queue's rights or anyone else's.
--
-- Like every migration: one transaction, search_path pinned, every name qualified (see
-- 001_enable_venue_images.sql).
BEGIN;
SET LOCAL search_path = pg_catalog, pg_temp;

DO $$
DECLARE
    rel text := venue_images.venue_images_relation();
    configured text := pg_catalog.current_setting('venue_images.images_column', true);
    col text := CASE WHEN configured IS NULL OR configured OPERATOR(pg_catalog.=) '' THEN 'venue_images'
                     ELSE configured END;
BEGIN
    EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS venue_images_enqueue ON %s', rel);
    EXECUTE pg_catalog.format(
        'CREATE TRIGGER venue_images_enqueue AFTER INSERT OR UPDATE OF %I ON %s
           FOR EACH ROW EXECUTE FUNCTION venue_images.venue_images_enqueue_trigger()', col, rel);
END
$$;

COMMIT;
