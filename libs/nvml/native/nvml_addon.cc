// N-API face of the NVML loader. Arguments are checked on the main thread; every NVML call runs in
// a Napi::AsyncWorker on libuv's pool and touches no JS value there; the C status is carried back
// and turned into a JS Error { nvmlReturn: <number>, function } in OnOK. The NVML_ERROR_* name is
// added on the JS side (libs/nvml/src/errors.ts holds the one table).
#include <napi.h>

#include <cstdlib>

#include "nvml_loader.h"

namespace {

Napi::Error MakeError(Napi::Env env, const nvml::Status& st) {
  Napi::Error err = Napi::Error::New(env, st.message.empty() ? nvml::ErrorString(st.code) : st.message);
  err.Set("nvmlReturn", Napi::Number::New(env, st.code));
  if (!st.function.empty()) err.Set("function", Napi::String::New(env, st.function));
  return err;
}

Napi::Object StateObject(Napi::Env env, const nvml::LibraryState& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("loaded", Napi::Boolean::New(env, s.loaded));
  o.Set("refCount", Napi::Number::New(env, s.refCount));
  o.Set("libraryPath", s.libraryPath.empty() ? env.Null() : Napi::String::New(env, s.libraryPath));
  return o;
}

template <typename T>
void SetIf(Napi::Object& o, const char* key, const std::optional<T>& v) {
  if (!v) return;
  if constexpr (std::is_same_v<T, std::string>) {
    o.Set(key, Napi::String::New(o.Env(), *v));
  } else {
    o.Set(key, Napi::Number::New(o.Env(), static_cast<double>(*v)));
  }
}

Napi::Object SnapshotObject(Napi::Env env, const nvml::Snapshot& s) {
  Napi::Object o = Napi::Object::New(env);
  SetIf(o, "driverVersion", s.driverVersion);
  SetIf(o, "nvmlVersion", s.nvmlVersion);
  o.Set("gpuCount", Napi::Number::New(env, s.gpuCount));
  o.Set("libraryPath", Napi::String::New(env, s.libraryPath));
  Napi::Array symbols = Napi::Array::New(env, s.symbols.size());
  for (size_t i = 0; i < s.symbols.size(); i++) symbols.Set(i, Napi::String::New(env, s.symbols[i]));
  o.Set("symbols", symbols);
  Napi::Array gpus = Napi::Array::New(env, s.devices.size());
  for (size_t i = 0; i < s.devices.size(); i++) {
    const nvml::DeviceReading& d = s.devices[i];
    Napi::Object g = Napi::Object::New(env);
    g.Set("index", Napi::Number::New(env, d.index));
    SetIf(g, "name", d.name);
    SetIf(g, "uuid", d.uuid);
    SetIf(g, "pciBusId", d.pciBusId);
    SetIf(g, "utilizationGpu", d.utilizationGpu);
    SetIf(g, "utilizationMemory", d.utilizationMemory);
    SetIf(g, "memoryTotalBytes", d.memoryTotalBytes);
    SetIf(g, "memoryFreeBytes", d.memoryFreeBytes);
    SetIf(g, "memoryUsedBytes", d.memoryUsedBytes);
    SetIf(g, "memoryReservedBytes", d.memoryReservedBytes);
    SetIf(g, "temperatureC", d.temperatureC);
    SetIf(g, "powerUsageMw", d.powerUsageMw);
    SetIf(g, "powerLimitMw", d.powerLimitMw);
    SetIf(g, "fanSpeedPercent", d.fanSpeedPercent);
    SetIf(g, "smClockMhz", d.smClockMhz);
    SetIf(g, "memClockMhz", d.memClockMhz);
    Napi::Array procs = Napi::Array::New(env, d.processes.size());
    for (size_t j = 0; j < d.processes.size(); j++) {
      Napi::Object p = Napi::Object::New(env);
      p.Set("pid", Napi::Number::New(env, d.processes[j].pid));
      SetIf(p, "usedMemoryBytes", d.processes[j].usedMemoryBytes);
      procs.Set(j, p);
    }
    g.Set("processes", procs);
    if (!d.error.ok()) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("nvmlReturn", Napi::Number::New(env, d.error.code));
      e.Set("function", Napi::String::New(env, d.error.function));
      e.Set("message", Napi::String::New(env, d.error.message));
      g.Set("error", e);
    }
    gpus.Set(i, g);
  }
  o.Set("gpus", gpus);
  return o;
}

// Base for promise-returning workers: Execute fills status_ (never SetError: we want our own
// Error shape), OnOK settles the promise on the main thread.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void OnOK() override {
    Napi::HandleScope scope(Env());
    if (!status_.ok()) {
      deferred_.Reject(MakeError(Env(), status_).Value());
    } else {
      deferred_.Resolve(Result(Env()));
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
  virtual Napi::Value Result(Napi::Env env) = 0;

  nvml::Status status_;
  Napi::Promise::Deferred deferred_;
};

class InitWorker : public PromiseWorker {
 public:
  InitWorker(Napi::Env env, std::string path) : PromiseWorker(env, "nvml.init"), path_(std::move(path)) {}
  void Execute() override { status_ = nvml::Init(path_, &after_); }
  Napi::Value Result(Napi::Env env) override { return StateObject(env, after_); }

 private:
  std::string path_;
  nvml::LibraryState after_;
};

class ShutdownWorker : public PromiseWorker {
 public:
  explicit ShutdownWorker(Napi::Env env) : PromiseWorker(env, "nvml.shutdown") {}
  void Execute() override { status_ = nvml::Shutdown(&after_); }
  Napi::Value Result(Napi::Env env) override { return StateObject(env, after_); }

 private:
  nvml::LibraryState after_;
};

class ReadWorker : public PromiseWorker {
 public:
  explicit ReadWorker(Napi::Env env) : PromiseWorker(env, "nvml.read") {}
  void Execute() override { status_ = nvml::Read(&snapshot_); }
  Napi::Value Result(Napi::Env env) override { return SnapshotObject(env, snapshot_); }

 private:
  nvml::Snapshot snapshot_;
};

template <typename W>
Napi::Value Queue(W* worker) {
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

// init(libraryPath?: string): Promise<{ loaded, refCount, libraryPath }>
Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (info.Length() > 0 && !info[0].IsUndefined() && !info[0].IsNull()) {
    if (!info[0].IsString()) {
      Napi::TypeError::New(env, "init(libraryPath?: string): libraryPath must be a string").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    path = info[0].As<Napi::String>().Utf8Value();
  }
  return Queue(new InitWorker(env, path));
}

Napi::Value Shutdown(const Napi::CallbackInfo& info) { return Queue(new ShutdownWorker(info.Env())); }
Napi::Value Read(const Napi::CallbackInfo& info) { return Queue(new ReadWorker(info.Env())); }

Napi::Value Reset(const Napi::CallbackInfo& info) {
  nvml::Reset();
  return info.Env().Undefined();
}

Napi::Value State(const Napi::CallbackInfo& info) { return StateObject(info.Env(), nvml::State()); }

// setNativeEnv(name, value?): setenv/unsetenv in the real process environment. Jest gives each spec
// a copy of process.env that never reaches getenv(), so tests set FAKE_NVML_STATE through this.
Napi::Value SetNativeEnv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString() || (info.Length() > 1 && !info[1].IsString() && !info[1].IsUndefined())) {
    Napi::TypeError::New(env, "setNativeEnv(name: string, value?: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  if (info.Length() > 1 && info[1].IsString()) {
    setenv(name.c_str(), info[1].As<Napi::String>().Utf8Value().c_str(), 1);
  } else {
    unsetenv(name.c_str());
  }
  return env.Undefined();
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, Init, "init"));
  exports.Set("shutdown", Napi::Function::New(env, Shutdown, "shutdown"));
  exports.Set("read", Napi::Function::New(env, Read, "read"));
  exports.Set("reset", Napi::Function::New(env, Reset, "reset"));
  exports.Set("state", Napi::Function::New(env, State, "state"));
  exports.Set("setNativeEnv", Napi::Function::New(env, SetNativeEnv, "setNativeEnv"));
  return exports;
}

}  // namespace

NODE_API_MODULE(nvml, InitModule)
