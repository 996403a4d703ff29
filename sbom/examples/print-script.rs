fn main() {
    print!("{}", kiln_sbom::collect::default_script());
}
