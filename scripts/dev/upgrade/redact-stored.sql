-- ===========================================================================================
-- Secrets 0.2.0 could have stored. Its purge copied removed elements into the attempt log
-- redacting provider_url only (a failed element's url held Google's key=), and its
-- redaction missed several forms: everything stored is redacted again with the current
-- rule.
-- ===========================================================================================
UPDATE venue_images.venue_image_attempts
   SET detail = venue_images.venue_images_redact_json(detail)
 WHERE detail IS NOT NULL;
UPDATE venue_images.venue_image_attempts
   SET message = venue_images.venue_images_redact(message),
       provider_url = venue_images.venue_images_redact(provider_url)
 WHERE message OPERATOR(pg_catalog.<>) venue_images.venue_images_redact(message)
    OR provider_url OPERATOR(pg_catalog.<>) venue_images.venue_images_redact(provider_url);
UPDATE venue_images.venue_image_jobs
   SET provider_url = venue_images.venue_images_redact(provider_url)
 WHERE provider_url OPERATOR(pg_catalog.<>) venue_images.venue_images_redact(provider_url);
UPDATE venue_images.venue_image_providers
   SET pause_reason = venue_images.venue_images_redact(pause_reason)
 WHERE pause_reason OPERATOR(pg_catalog.<>) venue_images.venue_images_redact(pause_reason);
