-- Every statement that writes what a tag lookup reads (prompts, versions, tags, rollouts)
-- notifies the channel `runner_routing` when its transaction commits, whichever program ran
-- it. A server listening there keeps tag answers in memory and drops them at each word
-- (src/store/postgres/feed.rs). A rolled-back transaction notifies nobody, and PostgreSQL
-- folds a transaction's identical notifications into one.
CREATE FUNCTION runner_routing_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('runner_routing', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER prompts_routing AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON prompts
    FOR EACH STATEMENT EXECUTE FUNCTION runner_routing_changed();
CREATE TRIGGER prompt_versions_routing AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON prompt_versions
    FOR EACH STATEMENT EXECUTE FUNCTION runner_routing_changed();
CREATE TRIGGER tags_routing AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tags
    FOR EACH STATEMENT EXECUTE FUNCTION runner_routing_changed();
CREATE TRIGGER rollouts_routing AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON rollouts
    FOR EACH STATEMENT EXECUTE FUNCTION runner_routing_changed();
