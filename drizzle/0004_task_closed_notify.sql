-- Every replica keeps open tasks in memory for its issuance decisions (src/tasks/cache.ts). When a task
-- stops being open, however that happens (the API, or an UPDATE by hand), the commit notifies every
-- replica listening, and each forgets it. The commit that records a lease re-reads the task's status
-- anyway: a missed notification costs a minted credential that is recorded as revoking, never one released.
CREATE FUNCTION "tasklease_task_closed"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    IF OLD."status" = 'open' THEN PERFORM pg_notify('tasklease_task_closed', OLD."id"); END IF;
  ELSIF OLD."status" = 'open' AND NEW."status" IS DISTINCT FROM 'open' THEN
    PERFORM pg_notify('tasklease_task_closed', NEW."id");
  END IF;
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "tasks_closed_notify" AFTER UPDATE OF "status" OR DELETE ON "tasks"
  FOR EACH ROW EXECUTE FUNCTION "tasklease_task_closed"();
