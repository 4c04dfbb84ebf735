// Placeholder so the examples build is wired up; replaced by the real quickstart.
#include <ormcache/ormcache.hpp>

int main() { return 0; }
