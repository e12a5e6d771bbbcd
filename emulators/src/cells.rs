//! Per-cell state of a service that many cells share: each gateway session (one per cell)
//! has its own `T`, opened when the cell starts and closed when it ends.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The `T` of each open cell, by gateway session.
pub(crate) struct Cells<T>(RwLock<HashMap<u64, Arc<T>>>);

impl<T> Default for Cells<T> {
    fn default() -> Self {
        Cells(RwLock::new(HashMap::new()))
    }
}

impl<T> Cells<T> {
    /// Gives session `session` its `cell` (replacing one it had) and hands it back.
    pub(crate) fn open(&self, session: u64, cell: Arc<T>) -> Arc<T> {
        self.0.write().expect("cells lock").insert(session, cell.clone());
        cell
    }

    /// The cell behind `session`, while it is open.
    pub(crate) fn get(&self, session: u64) -> Option<Arc<T>> {
        self.0.read().expect("cells lock").get(&session).cloned()
    }

    pub(crate) fn close(&self, session: u64) {
        self.0.write().expect("cells lock").remove(&session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_found_by_session_until_closed() {
        let cells = Cells::default();
        let opened = cells.open(1, Arc::new("one"));
        assert!(Arc::ptr_eq(&opened, &cells.get(1).unwrap()));
        assert!(cells.get(2).is_none());
        cells.close(1);
        assert!(cells.get(1).is_none());
    }
}
