/// Decoding builds trees of many small allocations; mimalloc makes them markedly cheaper
/// than the system allocator (see `benches/protobuf.rs`). The benches declare the same.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gamewire::cli::main()
}
