CREATE TABLE "audit_head" (
	"id" integer PRIMARY KEY NOT NULL,
	"hash" text NOT NULL
);
--> statement-breakpoint
-- The chain continues from its newest event. Appends now lock this row instead of an advisory lock:
-- replicas from before this migration must not append beside replicas after it.
INSERT INTO "audit_head" ("id", "hash")
SELECT 1, coalesce((SELECT "hash" FROM "audit_events" ORDER BY "seq" DESC LIMIT 1), repeat('0', 64));
