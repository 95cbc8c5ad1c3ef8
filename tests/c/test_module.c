/* Imports the C API as a Clang module through include/module.modulemap
 * (what Swift's `import PayloadStore` uses). Compiled with
 * clang -fmodules -fmodule-map-file=include/module.modulemap. */
@import PayloadStore;

int main(void) {
    return ps_version_number() == PS_VERSION_NUMBER ? 0 : 1;
}
