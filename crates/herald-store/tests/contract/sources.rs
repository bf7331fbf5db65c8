//! Sources of inbound webhooks: scoped by tenant except for the one lookup
//! an ingest request makes, written back only over the version read, and
//! gone with their application.

use herald_core::source::{HmacSource, Locator, SourceKind, SourceSecret};
use herald_core::SourceId;
use herald_signature::{Algorithm, Encoding, HmacScheme};
use herald_store::{ListQuery, Source, Store};

use super::{application, tenant};

fn source(app_id: &herald_core::ApplicationId, kind: SourceKind) -> Source {
    let now = herald_store::now();
    Source {
        id: SourceId::new(),
        app_id: app_id.clone(),
        description: "payments".into(),
        secret: SourceSecret::parse(kind.name(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
        kind,
        tolerance_seconds: 300,
        metadata: [("team".to_owned(), "billing".to_owned())].into(),
        created_at: now,
        updated_at: now,
    }
}

pub async fn sources_are_tenant_scoped_and_go_with_their_application(store: &dyn Store) {
    let a = tenant(store, "a").await;
    let b = tenant(store, "b").await;
    let app = application(None);
    store.insert_application(&a, &app).await.unwrap();
    let hmac = SourceKind::Hmac(HmacSource {
        signature: HmacScheme::new("X-Sig", Algorithm::Sha512, Encoding::Base64).unwrap(),
        prefix: Some("sha512=".into()),
        event_type: Locator::Header("X-Event".into()),
        event_id: Some(Locator::Pointer("/id".into())),
    });
    let stripe = source(&app.id, SourceKind::Stripe);
    let custom = source(&app.id, hmac.clone());
    store.insert_source(&a, &stripe).await.unwrap();
    store.insert_source(&a, &custom).await.unwrap();

    let read = store.source(&a, &custom.id).await.unwrap().expect("stored");
    assert_eq!(read.kind, hmac);
    assert_eq!(read.secret, custom.secret);
    assert_eq!(
        (
            read.description.as_str(),
            read.tolerance_seconds,
            &read.metadata
        ),
        ("payments", 300, &custom.metadata)
    );
    assert_eq!(
        (read.created_at, read.updated_at),
        (custom.created_at, custom.updated_at)
    );
    let (owner, found) = store
        .source_by_id(&stripe.id)
        .await
        .unwrap()
        .expect("found");
    assert_eq!((owner, found.kind), (a.clone(), SourceKind::Stripe));

    // Another tenant sees nothing, and cannot change or delete it.
    assert!(store.source(&b, &stripe.id).await.unwrap().is_none());
    assert!(store
        .list_sources(&b, &ListQuery::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(!store.delete_source(&b, &stripe.id).await.unwrap());
    assert!(!store
        .update_source(&b, &stripe, stripe.updated_at)
        .await
        .unwrap());
    let listed = store.list_sources(&a, &ListQuery::default()).await.unwrap();
    assert_eq!(listed.items.len(), 2);

    // An update over a stale version loses.
    let mut changed = read.clone();
    changed.description = "renamed".into();
    changed.secret = SourceSecret::parse(changed.kind.name(), "another secret").unwrap();
    changed.updated_at = herald_store::now_after(read.updated_at);
    assert!(store
        .update_source(&a, &changed, read.updated_at)
        .await
        .unwrap());
    assert!(!store
        .update_source(&a, &changed, read.updated_at)
        .await
        .unwrap());
    let read = store.source(&a, &custom.id).await.unwrap().expect("stored");
    assert_eq!(read.secret.as_str(), "another secret");
    assert_eq!(read.description, "renamed");

    assert!(store.delete_source(&a, &custom.id).await.unwrap());
    assert!(store.source(&a, &custom.id).await.unwrap().is_none());
    // Deleting the application takes its sources along.
    assert!(store.delete_application(&a, &app.id).await.unwrap());
    assert!(store.source_by_id(&stripe.id).await.unwrap().is_none());
}
