-- One tenant, one application and one endpoint for the floor scripts (ids
-- the scripts use: ten_floor, app_floor, ep_floor).
INSERT INTO tenant (id, name) VALUES ('ten_floor', 'floor');
INSERT INTO application (id, tenant_id, uid, name, created_at, updated_at)
VALUES ('app_floor', 'ten_floor', 'floor', 'floor', now(), now());
INSERT INTO endpoint (id, tenant_id, app_id, uid, url, secrets, created_at, updated_at)
VALUES ('ep_floor', 'ten_floor', 'app_floor', 'ep-0', 'http://127.0.0.1:9000/e/0',
        '{"current": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}', now(), now());
