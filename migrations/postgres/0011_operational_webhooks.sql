-- Operational webhooks: each tenant's operational endpoints are ordinary
-- endpoints of one hidden application, marked here. The application routes,
-- listings and `POST /msg` never see it (`NOT operational`), so a tenant can
-- neither reach it nor collide with it through a uid.
ALTER TABLE application ADD COLUMN operational BOOLEAN NOT NULL DEFAULT false;
-- At most one operational application per tenant.
CREATE UNIQUE INDEX application_operational_key ON application (tenant_id) WHERE operational;
