-- Queues transient failures as soon as the application writes them, so recovery does not
-- wait for the nightly scan. Installed on the relation named by venue_images.venues_table
-- (default venues) and its images column (default venue_images). Idempotent.
DO $$
DECLARE
    tbl text := coalesce(nullif(current_setting('venue_images.venues_table', true), ''), 'venues');
    col text := coalesce(nullif(current_setting('venue_images.images_column', true), ''), 'venue_images');
    rel regclass := to_regclass(tbl);
BEGIN
    IF rel IS NULL THEN
        RAISE EXCEPTION 'venue_images: relation "%" does not exist', tbl
            USING HINT = 'Create the venues table first, or set venue_images.venues_table.';
    END IF;
    EXECUTE format('DROP TRIGGER IF EXISTS venue_images_enqueue ON %s', rel);
    EXECUTE format(
        'CREATE TRIGGER venue_images_enqueue AFTER INSERT OR UPDATE OF %I ON %s
           FOR EACH ROW EXECUTE FUNCTION venue_images_enqueue_trigger()', col, rel);
END
$$;
