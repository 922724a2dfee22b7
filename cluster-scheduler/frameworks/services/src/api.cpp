#include "services/api.hpp"

#include <spdlog/spdlog.h>

#include "services/app.hpp"

namespace tug::cluster::services {

using json = nlohmann::json;

namespace {

http::Response Json(int status, const json& body) {
  http::Response r;
  r.status = status;
  r.body = body.dump();
  return r;
}

http::Response FromError(const Error& e) {
  int status = 500;
  if (e.Is(Errc::kInvalidArgument)) status = 400;
  if (e.Is(Errc::kNotFound)) status = 404;
  if (e.Is(Errc::kAlreadyExists)) status = 409;
  const std::string field = ErrorField(e);
  std::string msg = e.context;
  return http::JsonError(status, msg, field);
}

http::Response FromResult(const Result<json>& r, int ok_status) {
  if (!r) return FromError(r.error());
  return Json(ok_status, *r);
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::set<std::string> SplitComma(const std::string& s) {
  std::set<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t c = s.find(',', start);
    std::string part = s.substr(start, c == std::string::npos ? std::string::npos : c - start);
    if (!part.empty()) out.insert(part);
    if (c == std::string::npos) break;
    start = c + 1;
  }
  return out;
}

}  // namespace

Api::Api(boost::asio::io_context& io, Scheduler& scheduler, std::string name)
    : io_(io), scheduler_(scheduler), name_(std::move(name)), alive_(std::make_shared<bool>(true)) {}

Api::~Api() {
  *alive_ = false;
  for (auto& s : subscribers_) s.stream->Close();
}

void Api::Publish(const std::string& type, const json& body) {
  if (subscribers_.empty()) return;
  const std::string frame =
      "id: " + std::to_string(++event_seq_) + "\nevent: " + type + "\ndata: " + body.dump() + "\n\n";
  for (auto& s : subscribers_)
    if (s.types.empty() || s.types.count(type)) s.stream->Write(frame);
}

void Api::Keepalive() {
  for (auto& s : subscribers_) s.stream->Write(": keepalive\n\n");
}

http::Response Api::Events(const http::Request& req) {
  auto stream = http::Server::MakeStream(io_);
  Subscriber sub{stream, {}};
  auto q = req.Query();
  if (auto it = q.find("event_type"); it != q.end()) sub.types = SplitComma(it->second);
  auto pos = subscribers_.insert(subscribers_.end(), std::move(sub));
  stream->OnClose([this, pos, alive = alive_] {
    if (*alive) subscribers_.erase(pos);
  });
  json hello{{"eventType", "event_stream_attached"}, {"remoteAddress", req.peer}};
  stream->Write("retry: 2000\nevent: event_stream_attached\ndata: " + hello.dump() + "\n\n");
  http::Response r;
  r.content_type = "text/event-stream";
  r.stream = stream;
  return r;
}

http::Response Api::Handle(const http::Request& req) {
  http::Response r = Route(req);
  if (r.status >= 500) spdlog::warn("services api: {} {} -> {} {}", req.method, req.target, r.status, r.body);
  return r;
}

http::Response Api::Route(const http::Request& req) {
  const std::string path = req.Path();
  const std::string& m = req.method;
  if (path == "/healthz" || path == "/ping") {
    http::Response r;
    r.content_type = "text/plain";
    // Healthy = subscribed to a master: without one nothing can be launched or replaced.
    r.status = scheduler_.connected() ? 200 : 503;
    r.body = scheduler_.connected() ? "ok\n" : "not subscribed to a master\n";
    return r;
  }
  if (path == "/metrics") {
    http::Response r;
    r.content_type = "text/plain; version=0.0.4";
    r.body = scheduler_.Metrics() +
             "# HELP tug_services_event_subscribers open /v2/events streams\n"
             "# TYPE tug_services_event_subscribers gauge\ntug_services_event_subscribers " +
             std::to_string(subscribers_.size()) + "\n";
    return r;
  }
  if (path == "/v2/info") {
    json info = scheduler_.Info();
    info["name"] = name_;
    info["eventSubscribers"] = subscribers_.size();
    return Json(200, info);
  }
  if (path == "/v2/events") {
    if (m != "GET") return http::JsonError(405, "use GET");
    return Events(req);
  }
  if (path == "/v2/deployments") {
    if (m != "GET") return http::JsonError(405, "use GET");
    return Json(200, scheduler_.Deployments());
  }
  if (path == "/v2/apps" || path == "/v2/apps/") {
    if (m == "GET") return Json(200, scheduler_.ListApps());
    if (m == "POST") {
      auto body = json::parse(req.body, nullptr, false);
      if (body.is_discarded()) return http::JsonError(400, "body: not valid JSON", "body");
      return FromResult(scheduler_.CreateApp(body), 201);
    }
    return http::JsonError(405, "use GET or POST");
  }
  const std::string prefix = "/v2/apps/";
  if (path.rfind(prefix, 0) == 0) {
    std::string id = path.substr(prefix.size() - 1);  // keeps the leading '/'
    if (m == "POST" && EndsWith(id, "/restart")) return FromResult(scheduler_.RestartApp(id.substr(0, id.size() - 8)), 200);
    if (m == "GET" && EndsWith(id, "/tasks")) {
      // "/x/tasks" is the tasks of /x unless an app is called /x/tasks.
      const std::string app = id.substr(0, id.size() - 6);
      if (!scheduler_.GetApp(id) && scheduler_.GetApp(app)) return FromResult(scheduler_.GetTasks(app), 200);
    }
    if (m == "GET") return FromResult(scheduler_.GetApp(id), 200);
    if (m == "PUT") {
      auto body = json::parse(req.body, nullptr, false);
      if (body.is_discarded()) return http::JsonError(400, "body: not valid JSON", "body");
      bool created = false;
      auto r = scheduler_.UpdateApp(id, body, &created);
      return FromResult(r, created ? 201 : 200);
    }
    if (m == "DELETE") return FromResult(scheduler_.DeleteApp(id), 200);
    return http::JsonError(405, "use GET, PUT or DELETE (POST .../restart)");
  }
  return http::JsonError(404, "no such route: " + path, "path");
}

}  // namespace tug::cluster::services
