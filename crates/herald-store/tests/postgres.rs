//! Runs the store contract against PostgreSQL, each test in a fresh database.
//! Skips when PostgreSQL is unreachable, unless `HERALD_REQUIRE_SERVICES=1`.

mod contract;

use herald_e2e::TestDatabase;
use herald_store::prelude::*;
use herald_store::SqlStore;

/// A migrated store on a fresh database (dropped with the guard).
struct FreshDatabase {
    store: SqlStore,
    _database: TestDatabase,
}

async fn fresh() -> Option<FreshDatabase> {
    let database = TestDatabase::create().await?;
    let store = SqlStore::postgres(&database.url, 2).expect("pool");
    store.migrate().await.expect("migrate");
    Some(FreshDatabase {
        store,
        _database: database,
    })
}

contract::contract_tests!(fresh);
