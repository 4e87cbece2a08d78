#include "server/auth.h"

#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <fstream>
#include <sstream>

#include "engine/strings.h"

namespace spool::server {

using engine::Cat;

namespace {

std::array<unsigned char, 32> Hash(std::string_view token) {
  std::array<unsigned char, 32> h;
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), h.data());
  return h;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string part;
  std::istringstream in(s);
  while (std::getline(in, part, sep)) out.push_back(part);
  return out;
}

bool ValidPattern(const std::string& p) {
  if (p.empty()) return false;
  size_t star = p.find('*');
  if (star != std::string::npos && star != p.size() - 1) return false;
  for (char c : p.substr(0, star)) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string PermissionName(Permission p) {
  if (p == (kConsume | kAdmin)) return "consume or admin";
  return p == kProduce ? "produce" : p == kConsume ? "consume" : "admin";
}

}  // namespace

bool Authorizer::Grant::Sees(std::string_view queue) const {
  for (const std::string& p : patterns) {
    if (!p.empty() && p.back() == '*') {
      if (queue.substr(0, p.size() - 1) == std::string_view(p).substr(0, p.size() - 1)) {
        return true;
      }
    } else if (queue == p) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<Authorizer> Authorizer::Parse(std::string_view text) {
  Authorizer a;
  std::istringstream in{std::string(text)};
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream fields(line);
    std::string token, permissions, queues, extra;
    if (!(fields >> token)) continue;  // blank or comment
    if (!(fields >> permissions >> queues)) {
      return absl::InvalidArgumentError(
          Cat("line ", n, ": expected a token, permissions and queue patterns"));
    }
    if (fields >> extra) {
      return absl::InvalidArgumentError(Cat("line ", n, ": unexpected \"", extra,
                                            "\" after the queue patterns (separate them with "
                                            "commas, no spaces)"));
    }
    Grant g;
    g.token_hash = Hash(token);
    for (const std::string& p : Split(permissions, ',')) {
      if (p == "produce") {
        g.permissions |= kProduce;
      } else if (p == "consume") {
        g.permissions |= kConsume;
      } else if (p == "admin") {
        g.permissions |= kAdmin;
      } else {
        return absl::InvalidArgumentError(
            Cat("line ", n, ": unknown permission \"", p, "\" (use produce, consume, admin)"));
      }
    }
    for (const std::string& q : Split(queues, ',')) {
      if (!ValidPattern(q)) {
        return absl::InvalidArgumentError(
            Cat("line ", n, ": \"", q, "\" is not a queue name or a prefix ending in *"));
      }
      g.patterns.push_back(q);
    }
    for (const Grant& other : a.grants_) {
      if (other.token_hash == g.token_hash) {
        return absl::InvalidArgumentError(Cat("line ", n, ": this token is listed twice"));
      }
    }
    a.grants_.push_back(std::move(g));
  }
  if (a.grants_.empty()) return absl::InvalidArgumentError("no token in the file");
  return a;
}

absl::StatusOr<Authorizer> Authorizer::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(Cat("cannot read the auth file ", path));
  std::stringstream text;
  text << in.rdbuf();
  auto a = Parse(text.str());
  if (!a.ok()) {
    return absl::InvalidArgumentError(Cat(path, ": ", std::string(a.status().message())));
  }
  return a;
}

absl::StatusOr<const Authorizer::Grant*> Authorizer::Identify(
    const grpc::CallbackServerContext* ctx) const {
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return IdentifyHeader("", "metadata");
  return IdentifyHeader(std::string_view(it->second.data(), it->second.size()), "metadata");
}

absl::StatusOr<const Authorizer::Grant*> Authorizer::IdentifyHeader(std::string_view value,
                                                                    std::string_view what) const {
  constexpr std::string_view kBearer = "Bearer ";
  if (value.size() <= kBearer.size() || value.substr(0, kBearer.size()) != kBearer) {
    return absl::UnauthenticatedError(
        Cat("this server needs a token: send the ", what, " \"authorization: Bearer <token>\""));
  }
  std::string_view token = value.substr(kBearer.size());
  std::array<unsigned char, 32> h = Hash(token);
  const Grant* found = nullptr;
  for (const Grant& g : grants_) {  // no early exit: the time does not depend on the match
    if (CRYPTO_memcmp(g.token_hash.data(), h.data(), h.size()) == 0) found = &g;
  }
  if (found == nullptr) return absl::UnauthenticatedError("unknown token");
  return found;
}

absl::Status Authorizer::Check(const Grant& grant, Permission needed, std::string_view queue) {
  if (!grant.Sees(queue)) {
    return absl::PermissionDeniedError(Cat("this token may not use queue \"", queue, "\""));
  }
  if ((grant.permissions & needed) == 0) {
    return absl::PermissionDeniedError(
        Cat("this token lacks the ", PermissionName(needed), " permission"));
  }
  return absl::OkStatus();
}

}  // namespace spool::server
