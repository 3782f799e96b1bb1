ALTER TABLE fossil_head DROP COLUMN group_token;
