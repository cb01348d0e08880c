// kvaultd with TLS on its control plane and libkvault with ClientConfig::tls, end to end: a
// throwaway CA and a server certificate for 127.0.0.1 made with the openssl command line, a real
// daemon started with --tls.cert_file/--tls.key_file. A client that trusts the CA pings and looks
// up; a plain client and a client that trusts only the system roots are refused within their
// connect_timeout; the daemon keeps serving the good client afterwards.

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "binary_run.h"
#include "daemon_process.h"
#include "kvault/client.h"
#include "kvault/common/block_key.h"

namespace kvault::testing {
namespace {

using namespace std::chrono_literals;

class KvaultdTlsTest : public BinaryTest {
 protected:
  KvaultdTlsTest() : BinaryTest("kvaultd_tls") {}

  // Makes ca.pem, server.pem and server.key in dir_. False (with the reason in *why) when the
  // openssl tool is missing or fails.
  bool MakeCertificates(std::string* why) {
    if (std::system("command -v openssl >/dev/null 2>&1") != 0) {
      *why = "the openssl command line tool is not installed";
      return false;
    }
    const std::string d = "'" + dir_.string() + "'";
    const std::string script =
        "cd " + d +
        " && ( printf 'basicConstraints=critical,CA:FALSE\\nsubjectAltName=IP:127.0.0.1\\n"
        "extendedKeyUsage=serverAuth\\n' > server.ext"
        " && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2"
        "    -subj /CN=kvault-tls-test-ca"
        " && openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr"
        "    -subj /CN=127.0.0.1"
        " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
        "    -out server.pem -days 2 -extfile server.ext"
        " ) >openssl.log 2>&1";
    if (std::system(script.c_str()) != 0) {
      *why = "openssl failed: " + Slurp(dir_ / "openssl.log");
      return false;
    }
    return true;
  }

  ClientConfig Config(const DaemonProcess& d) const {
    ClientConfig c;
    c.server = d.server();
    c.data_plane = false;  // the control plane is what TLS covers
    c.connect_timeout = 2000ms;
    c.request_timeout = 2000ms;
    c.reconnect_backoff = 0ms;
    return c;
  }
};

TEST_F(KvaultdTlsTest, VerifiedClientServesOthersAreRefused) {
  std::string why;
  if (!MakeCertificates(&why)) GTEST_SKIP() << why;
  DaemonProcess d(
      dir_, {"--storage.host_capacity", "64MiB", "--tls.cert_file", (dir_ / "server.pem").string(),
             "--tls.key_file", (dir_ / "server.key").string()});
  ASSERT_TRUE(d.ok()) << d.ready_line() << "\n" << d.Stderr();
  ASSERT_NE(d.ready_line().find("tls=on"), std::string::npos) << d.ready_line();

  // A client that trusts the CA: ping and lookup.
  ClientConfig good = Config(d);
  good.tls = true;
  good.tls_ca_file = (dir_ / "ca.pem").string();
  Result<std::unique_ptr<Client>> client = Client::Connect(good);
  ASSERT_TRUE(client.ok()) << client.status().ToString() << "\n" << d.Stderr();
  Result<std::chrono::nanoseconds> rtt = (*client)->Ping();
  ASSERT_TRUE(rtt.ok()) << rtt.status().ToString();
  BlockKey key{};
  key[0] = 0x42;
  const std::vector<BlockKey> keys = {key};
  LookupResult miss = (*client)->LookupPrefix(keys);
  ASSERT_TRUE(miss.status.ok()) << miss.status.ToString();
  EXPECT_EQ(miss.leading_hits, 0u);
  ASSERT_EQ(miss.tiers.size(), 1u);

  // A plain client: refused (the daemon drops a stream that is no TLS handshake) well within its
  // connect_timeout, no hang.
  {
    ClientConfig plain = Config(d);
    const auto start = std::chrono::steady_clock::now();
    Result<std::unique_ptr<Client>> c = Client::Connect(plain);
    const auto took = std::chrono::steady_clock::now() - start;
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kUnavailable) << c.status().ToString();
    EXPECT_NE(c.status().message().find("is its control plane TLS?"), std::string::npos)
        << c.status().ToString();
    EXPECT_LT(took, plain.connect_timeout + 2000ms) << c.status().ToString();
    std::printf("plain client: %s (%lld ms)\n", c.status().ToString().c_str(),
                static_cast<long long>(
                    std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  }

  // A TLS client that trusts only the system roots: the certificate does not verify.
  {
    ClientConfig untrusting = Config(d);
    untrusting.tls = true;
    const auto start = std::chrono::steady_clock::now();
    Result<std::unique_ptr<Client>> c = Client::Connect(untrusting);
    const auto took = std::chrono::steady_clock::now() - start;
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kUnavailable) << c.status().ToString();
    EXPECT_NE(c.status().message().find("TLS handshake"), std::string::npos)
        << c.status().ToString();
    EXPECT_NE(c.status().message().find("certificate verify failed"), std::string::npos)
        << c.status().ToString();
    EXPECT_LT(took, untrusting.connect_timeout + 2000ms);
    std::printf("untrusting client: %s\n", c.status().ToString().c_str());
  }

  // A TLS client that trusts the CA but expects another name: the host name check refuses it.
  {
    ClientConfig wrong_name = Config(d);
    wrong_name.tls = true;
    wrong_name.tls_ca_file = (dir_ / "ca.pem").string();
    wrong_name.tls_server_name = "kv-node-3.example";
    Result<std::unique_ptr<Client>> c = Client::Connect(wrong_name);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kUnavailable) << c.status().ToString();
    EXPECT_NE(c.status().message().find("does not match the server name"), std::string::npos)
        << c.status().ToString();
  }

  // A CA file that does not exist is a configuration error, reported as such.
  {
    ClientConfig missing_ca = Config(d);
    missing_ca.tls = true;
    missing_ca.tls_ca_file = (dir_ / "no-such-ca.pem").string();
    Result<std::unique_ptr<Client>> c = Client::Connect(missing_ca);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << c.status().ToString();
  }

  // The daemon still serves the good client, on its existing connection and on a new one.
  rtt = (*client)->Ping();
  EXPECT_TRUE(rtt.ok()) << rtt.status().ToString();
  EXPECT_TRUE((*client)->LookupPrefix(keys).status.ok());
  Result<std::unique_ptr<Client>> again = Client::Connect(good);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE((*again)->Ping().ok());

  // SIGTERM with both TLS clients still connected: the daemon closes their connections (each on
  // its own strand) and exits cleanly.
  EXPECT_EQ(d.Terminate(), 0) << d.Stderr();
}

}  // namespace
}  // namespace kvault::testing
