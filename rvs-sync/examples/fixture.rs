//! Prints, one hex line each, the messages rvs sends in the kernel-interop check
//! (tests/fixtures/rvs_to_kernel.txt): a kernel IPVS backup in the VM must install them.
//! `cargo run -p rvs-sync --example fixture`
fn main() {
    for m in rvs_sync::interop::rvs_messages() {
        println!("{}", rvs_sync::interop::hex(&m));
    }
}
