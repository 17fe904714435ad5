ALTER TABLE "tasks" ADD COLUMN "external_id" text;--> statement-breakpoint
CREATE UNIQUE INDEX "tasks_external_id_idx" ON "tasks" USING btree ("created_by","external_id");