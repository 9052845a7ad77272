//! This machine's name, as a report records it to tell the machines of a split run apart.

/// The host name (in a Kubernetes pod: the pod's name); lossy if it is not UTF-8.
pub fn name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
