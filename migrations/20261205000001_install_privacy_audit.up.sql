-- The Slack install flow: a credential can be revoked (app_uninstalled, tokens_revoked), and
-- remembers who installed it and when.
ALTER TABLE oauth_tokens DROP CONSTRAINT oauth_tokens_status_check;
ALTER TABLE oauth_tokens ADD CONSTRAINT oauth_tokens_status_check
    CHECK (status IN ('active', 'needs_reinstall', 'revoked'));
ALTER TABLE oauth_tokens
    ADD COLUMN team_name    text,
    ADD COLUMN installed_by text,
    ADD COLUMN installed_at timestamptz,
    ADD COLUMN revoked_at   timestamptz,
    ADD COLUMN revoked_why  text;

-- Every audit entry says how it ended.
ALTER TABLE audit_log ADD COLUMN outcome text NOT NULL DEFAULT 'ok';

-- Data-subject requests: a person's sends are found by address, and an erased person is
-- remembered only by the SHA-256 of their lower-cased address (so a suppression still holds).
CREATE INDEX email_sends_email_idx ON email_sends (lower(email));
CREATE TABLE erased_people (
    email_hash  text PRIMARY KEY CHECK (email_hash ~ '^sha256:[0-9a-f]{64}$'),
    erased_at   timestamptz NOT NULL DEFAULT now()
);

-- GET /api/audit pages newest first by (occurred_at, id) — a keyset — filtered by what is
-- asked: each filter has an index in that order, so a page is an index range scan however
-- many rows the table holds.
CREATE INDEX audit_log_page_idx ON audit_log (occurred_at DESC, id DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, occurred_at DESC, id DESC);
CREATE INDEX audit_log_subject_idx ON audit_log (entity_type, entity_id, occurred_at DESC, id DESC);
CREATE INDEX audit_log_actor_page_idx ON audit_log (actor, occurred_at DESC, id DESC);
CREATE INDEX audit_log_outcome_idx ON audit_log (outcome, occurred_at DESC, id DESC) WHERE outcome <> 'ok';
-- Superseded by the ones above.
DROP INDEX audit_log_time_idx;
DROP INDEX audit_log_entity_idx;

-- Retention walks only what it still has to pseudonymise.
CREATE INDEX email_sends_recipient_retention_idx ON email_sends (updated_at) WHERE email NOT LIKE 'sha256:%';
CREATE INDEX email_events_details_retention_idx ON email_events (created_at) WHERE details <> '{}'::jsonb;
CREATE INDEX webhook_rejections_received_idx ON webhook_rejections (received_at);
CREATE INDEX outgoing_webhooks_created_idx ON outgoing_webhooks (created_at) WHERE status <> 'pending';

-- The audit log holds no raw address: team members' addresses recorded before this version
-- become their pseudonym (the SHA-256 of the lower-cased address, as store::people writes).
-- A one-time rewrite, the only one the append-only trigger is lifted for.
ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete;
UPDATE audit_log SET details = jsonb_set(details, '{created,email}',
        to_jsonb('sha256:' || encode(sha256(convert_to(lower(details #>> '{created,email}'), 'UTF8')), 'hex')))
    WHERE action = 'team_member.created' AND details #>> '{created,email}' NOT LIKE 'sha256:%';
UPDATE audit_log SET details = jsonb_set(jsonb_set(details, '{email,from}',
        CASE WHEN details #>> '{email,from}' IS NULL THEN 'null'::jsonb
             ELSE to_jsonb('sha256:' || encode(sha256(convert_to(lower(details #>> '{email,from}'), 'UTF8')), 'hex')) END),
        '{email,to}', to_jsonb('sha256:' || encode(sha256(convert_to(lower(details #>> '{email,to}'), 'UTF8')), 'hex')))
    WHERE action = 'team_member.updated' AND details #>> '{email,to}' NOT LIKE 'sha256:%';
ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete;
