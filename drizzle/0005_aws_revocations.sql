CREATE TABLE "aws_revocation_cutoffs" (
	"role_arn" text NOT NULL,
	"agent" text NOT NULL,
	"cutoff_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	CONSTRAINT "aws_revocation_cutoffs_role_arn_agent_pk" PRIMARY KEY("role_arn","agent")
);
--> statement-breakpoint
CREATE TABLE "aws_revocations" (
	"role_arn" text NOT NULL,
	"source_identity" text NOT NULL,
	"agent" text NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	CONSTRAINT "aws_revocations_role_arn_source_identity_pk" PRIMARY KEY("role_arn","source_identity")
);
--> statement-breakpoint
CREATE INDEX "aws_revocations_role_idx" ON "aws_revocations" USING btree ("role_arn","expires_at");