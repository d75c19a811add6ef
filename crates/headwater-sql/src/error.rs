//! sqlx's errors as the store's: the source is kept whole, and whether the
//! same write may succeed later is decided here, once for both engines.

use headwater_store::StoreError;

/// Whether the database answered that it was busy or locked (another
/// process writing), or no connection was free in time.
pub(crate) fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            let msg = d.message();
            msg.contains("locked") || msg.contains("busy")
        }
        sqlx::Error::PoolTimedOut => true,
        _ => false,
    }
}

pub(crate) fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database { retryable: is_busy(&e), source: Box::new(e) }
}

/// `?` for sqlx's results in the engines (the store's error type and
/// sqlx's are both foreign here, so no `From` can join them).
pub(crate) trait Db<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T> Db<T> for Result<T, sqlx::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(db)
    }
}

/// The sqlx error at the bottom of `e`, if any.
pub(crate) fn driver_error(e: &StoreError) -> Option<&sqlx::Error> {
    let source = match e {
        StoreError::Open { source, .. }
        | StoreError::Migration { source, .. }
        | StoreError::Database { source, .. } => source,
        _ => return None,
    };
    source.downcast_ref::<sqlx::Error>()
}
