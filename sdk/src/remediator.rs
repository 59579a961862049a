//! The remediator world: plan a response; the host executes it under admin policy.

use crate::{PlannedAction, PluginError, PluginInfo, Trigger};

/// Bindings generated for the contract's `remediator` world.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod world {
    wit_bindgen::generate!({
        world: "ward:plugin/remediator@0.2.1",
        path: "../wit",
        with: {
            "ward:plugin/types@0.2.1": crate::bindings::ward::plugin::types,
            "ward:plugin/host@0.2.1": crate::bindings::ward::plugin::host,
            "ward:plugin/process-table@0.2.1": crate::bindings::ward::plugin::process_table,
        },
        pub_export_macro: true,
        export_macro_name: "__export_remediator_world",
        default_bindings_module: "ward_sdk::__remediator_world",
    });
}

/// A remediator: implement this, then export it with [`crate::export_remediator!`].
pub trait Remediator: Default + 'static {
    /// Name, version and requested capabilities. Called once per instance.
    fn describe() -> PluginInfo;
    /// Plans the response to `trigger`; the host decides whether and how it runs.
    fn plan(&mut self, trigger: &Trigger) -> Result<Vec<PlannedAction>, PluginError>;
}

#[doc(hidden)]
pub mod rt {
    use super::*;
    use crate::instance::with_instance;

    /// Builds the instance's value first: `describe()` runs under the host's start-up
    /// budget, so expensive set-up (compiling rules) does not count against a call.
    pub fn describe<T: Remediator>() -> PluginInfo {
        with_instance::<T, _>(|_| ());
        T::describe()
    }

    pub fn plan<T: Remediator>(trigger: Trigger) -> Result<Vec<PlannedAction>, PluginError> {
        with_instance::<T, _>(|value| value.plan(&trigger))
    }
}

/// Exports a [`Remediator`] implementation as the component's `remediator` world.
#[macro_export]
macro_rules! export_remediator {
    ($ty:ty) => {
        #[doc(hidden)]
        pub struct __WardRemediatorExport;
        impl $crate::__remediator_world::Guest for __WardRemediatorExport {
            fn describe() -> $crate::PluginInfo {
                $crate::__remediator_rt::describe::<$ty>()
            }
            fn plan(
                trigger: $crate::Trigger,
            ) -> ::std::result::Result<::std::vec::Vec<$crate::PlannedAction>, $crate::PluginError> {
                $crate::__remediator_rt::plan::<$ty>(trigger)
            }
        }
        $crate::__remediator_world::__export_remediator_world!(__WardRemediatorExport with_types_in $crate::__remediator_world);
    };
}
