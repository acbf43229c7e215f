fn main() -> std::process::ExitCode {
    gamewire::cli::main()
}
