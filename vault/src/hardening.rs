//! Process hardening for a service that holds keys in memory.

/// Disables core dumps and marks the process non-dumpable, so a crash or a same-user debugger
/// cannot copy unlocked keys out of memory. Failure is logged, not fatal: some sandboxes forbid
/// these calls, and refusing to start there would help nobody.
pub fn disable_core_dumps() {
    use rustix::process::{Resource, Rlimit, setrlimit};
    if let Err(error) = setrlimit(Resource::Core, Rlimit { current: Some(0), maximum: Some(0) }) {
        tracing::warn!(%error, "could not disable core dumps");
    }
    if let Err(error) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        tracing::warn!(%error, "could not mark the process non-dumpable");
    }
}
