use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    eprintln!("holdfast: the server is not built yet");
    std::process::exit(2);
}
