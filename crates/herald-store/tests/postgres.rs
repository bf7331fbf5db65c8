//! Runs the store contract against PostgreSQL, each test in a fresh database.
//! Skips when PostgreSQL is unreachable, unless `HERALD_REQUIRE_SERVICES=1`.

mod contract;

use herald_e2e::TestDatabase;
use herald_store::{PgStore, Store};

/// A migrated store on a fresh database (dropped with the guard).
struct FreshDatabase {
    store: PgStore,
    _database: TestDatabase,
}

async fn fresh() -> Option<FreshDatabase> {
    let database = TestDatabase::create().await?;
    let store = PgStore::connect_lazy(&database.url, 2).expect("pool");
    store.migrate().await.expect("migrate");
    Some(FreshDatabase {
        store,
        _database: database,
    })
}

macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some(db) = fresh().await else { return };
                contract::$name(&db.store).await;
            }
        )*
    };
}

contract_tests!(
    objects_of_one_tenant_are_invisible_to_another,
    records_round_trip_unchanged,
    keyset_pages_cover_everything_once_in_both_orders,
    api_keys_are_found_by_hash_until_revoked,
    missing_event_types_ignores_other_tenants_and_archived_ones,
    settings_keep_their_first_value,
    updates_lose_to_a_concurrent_change,
    attempts_move_deliveries_through_their_states,
    due_deliveries_are_claimed_once_until_their_lease_ends,
    attempt_listings_filter_and_stay_in_their_tenant,
    manual_attempts_are_requested_through_the_outbox,
);
