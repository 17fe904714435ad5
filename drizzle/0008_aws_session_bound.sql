CREATE TABLE "aws_tagged_since" (
	"role_arn" text PRIMARY KEY NOT NULL,
	"since" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "aws_revocations" ADD COLUMN "untagged" boolean DEFAULT true NOT NULL;--> statement-breakpoint
CREATE INDEX "leases_ended_live_idx" ON "leases" USING btree ("backend","backend_expires_at") WHERE "leases"."revocable" and "leases"."status" <> 'active';