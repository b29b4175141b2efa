-- Enables the venue_images extension in the current database (idempotent).
-- Run as a superuser (the extension is not trusted: it loads a shared library).
CREATE EXTENSION IF NOT EXISTS venue_images;
