//! The smallest end-to-end check: the real binary starts and answers.

use herald_e2e::Herald;

herald_e2e::e2e_tests! {
    async fn health_answers_204_when_the_database_is_up() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let reply = herald.get("/api/v1/health").await;
        assert_eq!(reply.status, 204);
    }
}
