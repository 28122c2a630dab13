DROP INDEX email_requests_open_idx;
