// libFuzzer harness for kvaultd's config parsers (DESIGN.md §14): the YAML config file
// (ApplyConfigYaml, then ValidateDaemonConfig) and the tenants file (ParseTenantsYaml). Any input
// must give a config or a clear status: never a crash, a hang, an escaping exception or a read
// out of bounds (ASan + UBSan).

#include <cstddef>
#include <cstdint>
#include <string>

#include "config/config_loader.h"
#include "config/daemon_config.h"
#include "tenants/tenants_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  kvault::server::DaemonConfig config;
  if (kvault::server::ApplyConfigYaml(text, "fuzz", config).ok()) {
    (void)kvault::server::ValidateDaemonConfig(config);
    // What parsed must print and parse back.
    kvault::server::DaemonConfig again;
    if (!kvault::server::ApplyConfigYaml(kvault::server::FormatConfigYaml(config), "again", again)
             .ok()) {
      __builtin_trap();
    }
  }
  (void)kvault::server::ParseTenantsYaml(text, "fuzz");
  return 0;
}
