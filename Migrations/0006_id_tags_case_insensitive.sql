-- OCPP 1.6 defines IdToken as a case-insensitive string: "abc" and "ABC" are one tag.
CREATE UNIQUE INDEX id_tags_case_insensitive_key ON id_tags (lower(id_tag));
