ALTER TABLE "tasks" ADD COLUMN "purpose" text;--> statement-breakpoint
ALTER TABLE "tasks" ADD COLUMN "owner" text;