-- The publisher's display name, served through solutions?$expand=publisherid.
ALTER TABLE solutions ADD COLUMN publisher_friendly_name TEXT;
