CREATE TABLE "audit_events" (
	"seq" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "audit_events_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"at" timestamp with time zone NOT NULL,
	"actor" text NOT NULL,
	"action" text NOT NULL,
	"target" text NOT NULL,
	"decision" text NOT NULL,
	"reason" text,
	"details" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"request_id" text,
	"prev_hash" text NOT NULL,
	"hash" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "leases" (
	"id" uuid PRIMARY KEY NOT NULL,
	"task_id" text NOT NULL,
	"role" text NOT NULL,
	"backend" text NOT NULL,
	"issuer" text NOT NULL,
	"subject" text NOT NULL,
	"token_sha256" text NOT NULL,
	"status" text NOT NULL,
	"reason" text,
	"credential_ref" text NOT NULL,
	"issued_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"backend_expires_at" timestamp with time zone NOT NULL,
	"revoke_requested_at" timestamp with time zone,
	"ended_at" timestamp with time zone,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone,
	"last_error" text,
	"claimed_by" text,
	"claim_until" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "tasks" (
	"id" text PRIMARY KEY NOT NULL,
	"agent_issuer" text,
	"agent_subject" text NOT NULL,
	"roles" text[] NOT NULL,
	"status" text NOT NULL,
	"outcome" text,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"deadline" timestamp with time zone NOT NULL,
	"completed_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "leases" ADD CONSTRAINT "leases_task_id_tasks_id_fk" FOREIGN KEY ("task_id") REFERENCES "public"."tasks"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "audit_target_idx" ON "audit_events" USING btree ("target","seq");--> statement-breakpoint
CREATE INDEX "audit_actor_idx" ON "audit_events" USING btree ("actor","seq");--> statement-breakpoint
CREATE INDEX "audit_action_idx" ON "audit_events" USING btree ("action","seq");--> statement-breakpoint
CREATE INDEX "leases_due_active_idx" ON "leases" USING btree ("expires_at") WHERE "leases"."status" = 'active';--> statement-breakpoint
CREATE INDEX "leases_due_revoking_idx" ON "leases" USING btree ("next_attempt_at") WHERE "leases"."status" in ('revoking', 'revoke_failed');--> statement-breakpoint
CREATE INDEX "leases_task_idx" ON "leases" USING btree ("task_id");--> statement-breakpoint
CREATE INDEX "leases_subject_idx" ON "leases" USING btree ("subject","id");--> statement-breakpoint
CREATE INDEX "leases_status_idx" ON "leases" USING btree ("status","id");--> statement-breakpoint
CREATE INDEX "leases_role_idx" ON "leases" USING btree ("role","status");--> statement-breakpoint
CREATE INDEX "tasks_agent_idx" ON "tasks" USING btree ("agent_subject","status");