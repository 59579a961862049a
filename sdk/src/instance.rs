//! The one value of a plugin's type that lives in each instance.

use std::any::Any;
use std::cell::RefCell;

thread_local! {
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Runs `f` on this instance's value of `T`, creating it with `Default` on first use.
pub(crate) fn with_instance<T: Default + 'static, R>(f: impl FnOnce(&mut T) -> R) -> R {
    INSTANCE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if !slot.as_ref().is_some_and(|b| b.is::<T>()) {
            *slot = Some(Box::new(T::default()));
        }
        match slot.as_mut().and_then(|b| b.downcast_mut::<T>()) {
            Some(value) => f(value),
            // Unreachable: the slot was just filled with a `T`.
            None => f(&mut T::default()),
        }
    })
}
