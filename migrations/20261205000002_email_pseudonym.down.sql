DROP FUNCTION email_pseudonym(text);
