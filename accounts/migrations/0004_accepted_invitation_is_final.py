"""On PostgreSQL, refuse any change to an accepted invitation at the database itself.

The one change allowed is the database's own `ON DELETE SET NULL` of `invited_by` and
`accepted_user` when those accounts are deleted: the invitation outlives both.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION accounts_accepted_invitation_is_final() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status = 'accepted' THEN
            RAISE EXCEPTION 'accepted invitation % is never deleted', OLD.id USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status = 'accepted' AND (
        ROW(NEW.email, NEW.role_id, NEW.status, NEW.token_digest, NEW.created_at, NEW.expires_at,
            NEW.accepted_at, NEW.invited_by_email, NEW.email_sent, NEW.email_sent_at, NEW.email_failed_at,
            NEW.email_error, NEW.send_count, NEW.last_sent_requested_at)
        IS DISTINCT FROM
        ROW(OLD.email, OLD.role_id, OLD.status, OLD.token_digest, OLD.created_at, OLD.expires_at,
            OLD.accepted_at, OLD.invited_by_email, OLD.email_sent, OLD.email_sent_at, OLD.email_failed_at,
            OLD.email_error, OLD.send_count, OLD.last_sent_requested_at)
        OR (NEW.invited_by_id IS NOT NULL AND NEW.invited_by_id IS DISTINCT FROM OLD.invited_by_id)
        OR (NEW.accepted_user_id IS NOT NULL AND NEW.accepted_user_id IS DISTINCT FROM OLD.accepted_user_id)
    ) THEN
        RAISE EXCEPTION 'accepted invitation % is never edited', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS accounts_accepted_invitation_is_final ON accounts_providerinvitation;
CREATE TRIGGER accounts_accepted_invitation_is_final
    BEFORE UPDATE OR DELETE ON accounts_providerinvitation
    FOR EACH ROW EXECUTE FUNCTION accounts_accepted_invitation_is_final();
"""

DROP = """
DROP TRIGGER IF EXISTS accounts_accepted_invitation_is_final ON accounts_providerinvitation;
DROP FUNCTION IF EXISTS accounts_accepted_invitation_is_final();
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_invitation_audit_and_failures")]

    operations = [migrations.RunPython(create, drop)]
