-- The trigger that queues transient failures as soon as the application writes them,
-- on the venues table (venue_images.venues_table, default public.venues) and its images
-- column. Idempotent; run it again after changing venue_images.venues_table or
-- images_column.
--
-- No role gets rights on the table: the extension's functions read and write it as the
-- table's owner (as PostgreSQL's foreign-key triggers do), so the application's own
-- triggers, policies and index functions run as the application, never with the queue's
-- rights or anyone else's.
DO $$
DECLARE
    rel text := venue_images.venue_images_relation();
    col text := coalesce(nullif(pg_catalog.current_setting('venue_images.images_column', true), ''),
                         'venue_images');
BEGIN
    EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS venue_images_enqueue ON %s', rel);
    EXECUTE pg_catalog.format(
        'CREATE TRIGGER venue_images_enqueue AFTER INSERT OR UPDATE OF %I ON %s
           FOR EACH ROW EXECUTE FUNCTION venue_images.venue_images_enqueue_trigger()', col, rel);
END
$$;
