//! The operational application: one per tenant, hidden from every
//! application lookup, and the target of `emit_operational`.

use herald_core::operational::{EventDetail, OperationalEvent, OperationalEventType};
use herald_core::{EventTypeFilter, IdOrUid, Uid};
use herald_store::{emit_operational, ListQuery, Store};

use super::{application, endpoint, tenant};

fn created(app: &herald_store::Application, ep: &herald_store::Endpoint) -> OperationalEvent {
    OperationalEvent {
        event_type: OperationalEventType::EndpointCreated,
        app_id: app.id.clone(),
        endpoint_id: ep.id.clone(),
        endpoint_uid: ep.uid.clone(),
        detail: EventDetail::Endpoint,
    }
}

pub async fn the_operational_application_is_hidden_and_receives_operational_events(
    store: &dyn Store,
) {
    let t = tenant(store, "t").await;
    let other = tenant(store, "other").await;
    let app = application(Some("shop"));
    store.insert_application(&t, &app).await.unwrap();
    let customer = endpoint(&app.id, Some("customer"));
    store.insert_endpoint(&t, &customer).await.unwrap();

    // Nobody listens yet: nothing is stored, no application is made.
    assert_eq!(store.operational_app(&t, false).await.unwrap(), None);
    let sent = emit_operational(store, &t, &created(&app, &customer)).await;
    assert_eq!(sent.unwrap(), None);

    // One operational application per tenant, however often it is asked for.
    let ops = store.operational_app(&t, true).await.unwrap().unwrap();
    assert_eq!(
        store.operational_app(&t, true).await.unwrap(),
        Some(ops.clone())
    );
    let theirs = store.operational_app(&other, true).await.unwrap().unwrap();
    assert_ne!(ops, theirs);

    // Hidden from every application lookup the routes make.
    let by_id = IdOrUid::parse("app_id", ops.as_str()).unwrap();
    assert!(store.application(&t, &by_id).await.unwrap().is_none());
    let listed = store
        .list_applications(&t, &ListQuery::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1, "only the tenant's own application");
    let candidates = store
        .fan_out_candidates(&[(t.clone(), ops.clone())])
        .await
        .unwrap();
    assert!(candidates[0].is_none(), "no POST /msg to it");
    assert!(!store.delete_application(&t, &ops).await.unwrap());

    // Its endpoints receive the events they filter for; a disabled one none.
    let mut all = endpoint(&ops, None);
    all.event_types = None;
    let mut only_deleted = endpoint(&ops, None);
    only_deleted.event_types = Some(vec![EventTypeFilter::parse("endpoint.deleted").unwrap()]);
    let mut off = endpoint(&ops, None);
    off.disabled = true;
    for ep in [&all, &only_deleted, &off] {
        store.insert_endpoint(&t, ep).await.unwrap();
    }
    let msg_id = emit_operational(store, &t, &created(&app, &customer))
        .await
        .unwrap()
        .expect("an endpoint listens");
    let deliveries = store.deliveries_of_message(&t, &msg_id).await.unwrap();
    let targets: Vec<_> = deliveries.iter().map(|d| d.endpoint_id.clone()).collect();
    assert_eq!(targets, vec![all.id.clone()]);
    let by_id = IdOrUid::parse("msg_id", msg_id.as_str()).unwrap();
    let stored = store.message(&t, &ops, &by_id).await.unwrap().unwrap();
    assert_eq!(stored.event_type.as_str(), "endpoint.created");
    let payload: serde_json::Value = serde_json::from_slice(&stored.payload.unwrap()).unwrap();
    assert_eq!(payload["type"], "endpoint.created");
    assert_eq!(payload["data"]["appUid"], "shop");
    assert_eq!(payload["data"]["endpointUid"], "customer");

    // An event about the operational application itself is never sent.
    let about_itself = created(
        &herald_store::Application {
            id: ops.clone(),
            ..application(None)
        },
        &all,
    );
    assert_eq!(
        emit_operational(store, &t, &about_itself).await.unwrap(),
        None
    );

    let uids = store.event_uids(&t, &app.id, None).await.unwrap();
    assert_eq!(uids.app_uid, Some(Uid::parse("shop").unwrap()));
    assert_eq!(uids.msg_event_id, None);
}
