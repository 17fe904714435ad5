DROP INDEX "leases_role_idx";--> statement-breakpoint
CREATE INDEX "leases_backend_idx" ON "leases" USING btree ("backend","id");--> statement-breakpoint
CREATE INDEX "leases_role_idx" ON "leases" USING btree ("role","id");--> statement-breakpoint
-- Written by hand (drizzle declares no statistics). A role has one backend: without these, the planner takes a role
-- and another backend as independent, expects their pair often, and walks the table newest first to find none.
CREATE STATISTICS "leases_role_backend_stats" (mcv) ON "role", "backend" FROM "leases";
