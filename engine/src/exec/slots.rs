//! Resource classes: at most `capacity` stages of a class run at once, and each holds a
//! numbered slot while it runs. The slots of class `gpu` are device indices, so that
//! stages on one machine never share a GPU.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The class whose slots are GPU device indices.
pub const GPU: &str = "gpu";

pub(super) struct Slots {
    permits: Arc<Semaphore>,
    free: Mutex<Vec<usize>>,
}

/// A held slot; dropping it frees it.
pub(super) struct Slot {
    pub index: usize,
    slots: Arc<Slots>,
    _permit: OwnedSemaphorePermit,
}

impl Slots {
    pub(super) fn new(capacity: usize) -> Arc<Slots> {
        Arc::new(Slots {
            permits: Arc::new(Semaphore::new(capacity)),
            free: Mutex::new((0..capacity).collect()),
        })
    }

    /// Waits for a slot, and takes the lowest free one.
    pub(super) async fn acquire(self: &Arc<Self>) -> Slot {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let lowest = (0..free.len())
            .min_by_key(|&i| free[i])
            .expect("a permit means a free slot");
        let index = free.swap_remove(lowest);
        Slot {
            index,
            slots: Arc::clone(self),
            _permit: permit,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.index);
    }
}
