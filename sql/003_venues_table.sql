-- The venues table (venue_images.venues_table, default public.venues, and its images
-- column): the rights the extension's SECURITY DEFINER functions need on it, and the
-- trigger that queues transient failures as soon as the application writes them.
-- Idempotent; run it again after changing venue_images.venues_table or images_column.
--
-- venue_image_definer (created by the extension; not a superuser, cannot log in) gets
-- SELECT on the table and UPDATE of the images column only. Application triggers on the
-- table run as that role when the queue writes back: if yours write to other tables,
-- grant venue_image_definer what they need (or make them SECURITY DEFINER).
DO $$
DECLARE
    rel text := venue_images.venue_images_relation();
    col text := coalesce(nullif(pg_catalog.current_setting('venue_images.images_column', true), ''),
                         'venue_images');
BEGIN
    EXECUTE pg_catalog.format('GRANT SELECT ON %s TO venue_image_definer', rel);
    EXECUTE pg_catalog.format('GRANT UPDATE (%I) ON %s TO venue_image_definer', col, rel);
    EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS venue_images_enqueue ON %s', rel);
    EXECUTE pg_catalog.format(
        'CREATE TRIGGER venue_images_enqueue AFTER INSERT OR UPDATE OF %I ON %s
           FOR EACH ROW EXECUTE FUNCTION venue_images.venue_images_enqueue_trigger()', col, rel);
END
$$;
