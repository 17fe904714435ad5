CREATE TABLE "agent_suspensions" (
	"id" uuid PRIMARY KEY NOT NULL,
	"agent" text,
	"rule" jsonb,
	"reason" text NOT NULL,
	"suspended_by" text NOT NULL,
	"suspended_by_admin" boolean DEFAULT false NOT NULL,
	"suspended_at" timestamp with time zone NOT NULL,
	"revoked" integer DEFAULT 0 NOT NULL,
	"resumed_by" text,
	"resumed_at" timestamp with time zone,
	"resume_reason" text
);
--> statement-breakpoint
CREATE TABLE "agents" (
	"name" text PRIMARY KEY NOT NULL,
	"definition" jsonb NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "registry_state" (
	"id" integer PRIMARY KEY NOT NULL,
	"generation" bigint NOT NULL
);
--> statement-breakpoint
ALTER TABLE "leases" ADD COLUMN "agent" text;--> statement-breakpoint
ALTER TABLE "leases" ADD COLUMN "agent_owner" text;--> statement-breakpoint
CREATE UNIQUE INDEX "agent_suspensions_current_idx" ON "agent_suspensions" USING btree ("agent") WHERE "agent_suspensions"."resumed_at" is null and "agent_suspensions"."agent" is not null;--> statement-breakpoint
CREATE INDEX "agent_suspensions_agent_idx" ON "agent_suspensions" USING btree ("agent","suspended_at");--> statement-breakpoint
CREATE INDEX "agent_suspensions_in_force_idx" ON "agent_suspensions" USING btree ("suspended_at") WHERE "agent_suspensions"."resumed_at" is null;--> statement-breakpoint
CREATE INDEX "leases_agent_idx" ON "leases" USING btree ("agent","id") WHERE "leases"."agent" is not null;
--> statement-breakpoint
-- One row, given a new version (random, compared for equality) by every change to the agent registry
-- (agents/change.ts). Replicas keep the registry in memory (src/agents/registry.ts) and reload it when this
-- announces a change; the commit that records a lease reads the row FOR SHARE and compares the version
-- with the one its decision was made on.
INSERT INTO "registry_state" ("id", "generation") VALUES (1, 0);
--> statement-breakpoint
CREATE FUNCTION "tasklease_registry_changed"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('tasklease_agents', NEW."generation"::text);
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "registry_state_notify" AFTER UPDATE ON "registry_state"
  FOR EACH ROW EXECUTE FUNCTION "tasklease_registry_changed"();
