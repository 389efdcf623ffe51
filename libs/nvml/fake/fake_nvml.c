/*
 * A fake libnvidia-ml.so.1 for tests on machines without a GPU.
 *
 * Exports the NVML symbols the addon uses, with the real signatures and x86_64 struct layouts
 * (libs/nvml/reference: nvml.md). Readings come from the key=value state file named by
 * FAKE_NVML_STATE, whose format is defined by libs/nvml/src/fake-state.ts (keep both in step).
 * The file is parsed afresh on every call: it is small, and re-reading means a test that rewrites
 * it sees the change on the very next call with no cache to get wrong.
 *
 *   error.<symbol>=<code>          every call of that exact symbol answers <code>
 *   error.<symbol>.<gpuIndex>=<code>  only calls about that GPU
 *
 *   delay_ms=<n>                   nvmlDeviceGetCount* sleeps that long (a slow driver, for tests
 *                                  proving reads stay off the event loop)
 *
 * A missing or unreadable state file makes nvmlInit answer DRIVER_NOT_LOADED (no state = no driver).
 * Build with -DFAKE_NVML_V1_ONLY to leave out the versioned symbols (_v2/_v3), which exercises the
 * addon's fallbacks onto the old names.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))

typedef int nvmlReturn_t;
typedef struct fake_device *nvmlDevice_t;

enum {
  NVML_SUCCESS = 0,
  NVML_ERROR_UNINITIALIZED = 1,
  NVML_ERROR_INVALID_ARGUMENT = 2,
  NVML_ERROR_NOT_SUPPORTED = 3,
  NVML_ERROR_INSUFFICIENT_SIZE = 7,
  NVML_ERROR_DRIVER_NOT_LOADED = 9,
  NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
  NVML_ERROR_UNKNOWN = 999,
};

typedef struct { unsigned int gpu; unsigned int memory; } nvmlUtilization_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int version; unsigned long long total, reserved, free, used; } nvmlMemory_v2_t;
typedef struct { unsigned int pid; unsigned long long usedGpuMemory; } nvmlProcessInfo_v1_t;
typedef struct {
  unsigned int pid; unsigned long long usedGpuMemory; unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;
typedef struct {
  char busIdLegacy[16];
  unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
  char busId[32];
} nvmlPciInfo_t;

#define nvmlMemory_v2 0x02000028u
#define MAX_GPUS 16
#define MAX_PROCS 64
#define MAX_ERRORS 64
#define FIELD(name) unsigned long long name; int has_##name

struct fake_proc { unsigned int pid; unsigned long long used; };
struct fake_gpu {
  char name[128], uuid[128], pci[64];
  int has_name, has_uuid, has_pci;
  FIELD(util_gpu); FIELD(util_memory); FIELD(mem_total); FIELD(mem_used); FIELD(mem_reserved);
  FIELD(temperature); FIELD(power_usage); FIELD(power_limit); FIELD(fan_speed);
  FIELD(clock_sm); FIELD(clock_mem);
  unsigned int process_count;
  struct fake_proc procs[MAX_PROCS];
};
struct fake_error { char fn[96]; int gpu; /* -1 = all */ int code; };
struct fake_state {
  char driver_version[96], nvml_version[96];
  unsigned int gpu_count;
  unsigned long long delay_ms;
  struct fake_gpu gpus[MAX_GPUS];
  unsigned int error_count;
  struct fake_error errors[MAX_ERRORS];
};

/* Handles are stable addresses; a handle only carries its index, the readings come from the file. */
struct fake_device { unsigned int index; };
static struct fake_device devices[MAX_GPUS] = {
  {0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, {9}, {10}, {11}, {12}, {13}, {14}, {15},
};

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static int init_count = 0;

static void copy_str(char *dst, size_t cap, const char *src) {
  size_t n = strlen(src);
  if (n >= cap) n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = 0;
}

static int parse_uint(const char *s, unsigned long long *out) {
  char *end;
  if (!*s) return 0;
  *out = strtoull(s, &end, 10);
  return *end == 0;
}

static void set_gpu_field(struct fake_gpu *g, const char *k, const char *v) {
  unsigned long long n;
#define NUM(key) \
  if (strcmp(k, #key) == 0) { if (parse_uint(v, &n)) { g->key = n; g->has_##key = 1; } return; }
  if (strcmp(k, "name") == 0) { copy_str(g->name, sizeof g->name, v); g->has_name = 1; return; }
  if (strcmp(k, "uuid") == 0) { copy_str(g->uuid, sizeof g->uuid, v); g->has_uuid = 1; return; }
  if (strcmp(k, "pci_bus_id") == 0) { copy_str(g->pci, sizeof g->pci, v); g->has_pci = 1; return; }
  NUM(util_gpu) NUM(util_memory) NUM(mem_total) NUM(mem_used) NUM(mem_reserved) NUM(temperature)
  NUM(power_usage) NUM(power_limit) NUM(fan_speed) NUM(clock_sm) NUM(clock_mem)
#undef NUM
  if (strcmp(k, "process_count") == 0) {
    if (parse_uint(v, &n)) g->process_count = n > MAX_PROCS ? MAX_PROCS : (unsigned)n;
    return;
  }
  if (strncmp(k, "process.", 8) == 0) {
    char *end;
    unsigned long j = strtoul(k + 8, &end, 10);
    if (end == k + 8 || *end != '.' || j >= MAX_PROCS) return;
    if (!parse_uint(v, &n)) return;
    if (strcmp(end + 1, "pid") == 0) g->procs[j].pid = (unsigned)n;
    else if (strcmp(end + 1, "used_memory") == 0) g->procs[j].used = n;
  }
}

static void set_error(struct fake_state *s, const char *k, const char *v) {
  unsigned long long code;
  struct fake_error *e;
  const char *dot;
  if (s->error_count >= MAX_ERRORS || !parse_uint(v, &code)) return;
  e = &s->errors[s->error_count];
  e->gpu = -1;
  dot = strrchr(k, '.');
  if (dot && dot[1]) {
    const char *p = dot + 1;
    while (*p && isdigit((unsigned char)*p)) p++;
    if (*p == 0) {
      size_t n = (size_t)(dot - k);
      if (n >= sizeof e->fn) return;
      memcpy(e->fn, k, n);
      e->fn[n] = 0;
      e->gpu = atoi(dot + 1);
      e->code = (int)code;
      s->error_count++;
      return;
    }
  }
  copy_str(e->fn, sizeof e->fn, k);
  e->code = (int)code;
  s->error_count++;
}

/* Parses the state file into *s; returns 0 when it cannot be read. */
static int load_state(struct fake_state *s) {
  const char *path = getenv("FAKE_NVML_STATE");
  char line[1024];
  FILE *f;
  memset(s, 0, sizeof *s);
  if (!path || !*path) return 0;
  f = fopen(path, "r");
  if (!f) return 0;
  while (fgets(line, sizeof line, f)) {
    char *eq, *k = line, *v;
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    if (!n || line[0] == '#') continue;
    eq = strchr(line, '=');
    if (!eq) continue;
    *eq = 0;
    v = eq + 1;
    if (strcmp(k, "driver_version") == 0) copy_str(s->driver_version, sizeof s->driver_version, v);
    else if (strcmp(k, "nvml_version") == 0) copy_str(s->nvml_version, sizeof s->nvml_version, v);
    else if (strcmp(k, "delay_ms") == 0) parse_uint(v, &s->delay_ms);
    else if (strcmp(k, "gpu_count") == 0) {
      unsigned long long c;
      if (parse_uint(v, &c)) s->gpu_count = c > MAX_GPUS ? MAX_GPUS : (unsigned)c;
    } else if (strncmp(k, "gpu.", 4) == 0) {
      char *end;
      unsigned long i = strtoul(k + 4, &end, 10);
      if (end != k + 4 && *end == '.' && i < MAX_GPUS) set_gpu_field(&s->gpus[i], end + 1, v);
    } else if (strncmp(k, "error.", 6) == 0) {
      set_error(s, k + 6, v);
    }
  }
  fclose(f);
  return 1;
}

static int injected(const struct fake_state *s, const char *fn, int gpu) {
  unsigned int i;
  int all = 0;
  for (i = 0; i < s->error_count; i++) {
    if (strcmp(s->errors[i].fn, fn) != 0) continue;
    if (s->errors[i].gpu == gpu && gpu >= 0) return s->errors[i].code; /* per-GPU wins */
    if (s->errors[i].gpu < 0) all = s->errors[i].code;
  }
  return all;
}

static int initialized(void) {
  int n;
  pthread_mutex_lock(&init_lock);
  n = init_count;
  pthread_mutex_unlock(&init_lock);
  return n > 0;
}

/* Common prologue: state loaded, initialised, injected error, device index valid. */
#define BEGIN(fn, dev)                                                            \
  struct fake_state *s;                                                           \
  const struct fake_gpu *g;                                                       \
  int rc_, gi_;                                                                   \
  if (!initialized()) return NVML_ERROR_UNINITIALIZED;                            \
  if ((dev) == NULL) return NVML_ERROR_INVALID_ARGUMENT;                          \
  gi_ = (int)(dev)->index;                                                        \
  s = malloc(sizeof *s);                                                          \
  if (!s) return NVML_ERROR_UNKNOWN;                                              \
  if (!load_state(s)) { free(s); return NVML_ERROR_DRIVER_NOT_LOADED; }           \
  rc_ = injected(s, fn, gi_);                                                     \
  if (!rc_ && (unsigned)gi_ >= s->gpu_count) rc_ = NVML_ERROR_INVALID_ARGUMENT;   \
  if (rc_) { free(s); return rc_; }                                               \
  g = &s->gpus[gi_];                                                              \
  (void)g;

#define END(rc) do { nvmlReturn_t r_ = (rc); free(s); return r_; } while (0)

static nvmlReturn_t do_init(const char *fn) {
  struct fake_state *s = malloc(sizeof *s);
  int rc;
  if (!s) return NVML_ERROR_UNKNOWN;
  if (!load_state(s)) { free(s); return NVML_ERROR_DRIVER_NOT_LOADED; }
  rc = injected(s, fn, -1);
  free(s);
  if (rc) return rc;
  pthread_mutex_lock(&init_lock);
  init_count++;
  pthread_mutex_unlock(&init_lock);
  return NVML_SUCCESS;
}

#ifndef FAKE_NVML_V1_ONLY
EXPORT nvmlReturn_t nvmlInit_v2(void) { return do_init("nvmlInit_v2"); }
#endif
EXPORT nvmlReturn_t nvmlInit(void) { return do_init("nvmlInit"); }

EXPORT nvmlReturn_t nvmlShutdown(void) {
  struct fake_state *s = malloc(sizeof *s);
  int rc = 0;
  if (!s) return NVML_ERROR_UNKNOWN;
  if (load_state(s)) rc = injected(s, "nvmlShutdown", -1);
  free(s);
  if (rc) return rc;
  pthread_mutex_lock(&init_lock);
  if (init_count == 0) rc = NVML_ERROR_UNINITIALIZED;
  else init_count--;
  pthread_mutex_unlock(&init_lock);
  return rc;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t r) {
  switch (r) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 5: return "Already Initialized";
    case 6: return "Not Found";
    case 7: return "Insufficient Size";
    case 8: return "Insufficient External Power";
    case 9: return "Driver Not Loaded";
    case 10: return "Timeout";
    case 11: return "Interrupt request issue";
    case 12: return "NVML Shared Library Not Found";
    case 13: return "Function Not Found";
    case 14: return "Corrupted infoROM";
    case 15: return "GPU is lost";
    case 16: return "GPU requires restart";
    case 17: return "The operating system has blocked the request.";
    case 18: return "RM has detected an NVML/RM version mismatch.";
    case 19: return "In use by another client";
    case 20: return "Insufficient Memory";
    case 21: return "No data";
    case 25: return "Argument version mismatch";
    case 26: return "Deprecated";
    case 27: return "Not Ready";
    case 28: return "GPU not found";
    case 29: return "Invalid state";
    default: return "Unknown Error";
  }
}

static nvmlReturn_t system_string(const char *fn, int which, char *buf, unsigned int len) {
  struct fake_state *s;
  const char *v;
  int rc;
  if (!initialized()) return NVML_ERROR_UNINITIALIZED;
  if (!buf) return NVML_ERROR_INVALID_ARGUMENT;
  s = malloc(sizeof *s);
  if (!s) return NVML_ERROR_UNKNOWN;
  if (!load_state(s)) { free(s); return NVML_ERROR_DRIVER_NOT_LOADED; }
  rc = injected(s, fn, -1);
  v = which ? s->nvml_version : s->driver_version;
  if (!rc && strlen(v) + 1 > len) rc = NVML_ERROR_INSUFFICIENT_SIZE;
  if (!rc) strcpy(buf, v);
  free(s);
  return rc;
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *buf, unsigned int len) {
  return system_string("nvmlSystemGetDriverVersion", 0, buf, len);
}
EXPORT nvmlReturn_t nvmlSystemGetNVMLVersion(char *buf, unsigned int len) {
  return system_string("nvmlSystemGetNVMLVersion", 1, buf, len);
}

static nvmlReturn_t get_count(const char *fn, unsigned int *count) {
  struct fake_state *s;
  int rc;
  if (!initialized()) return NVML_ERROR_UNINITIALIZED;
  if (!count) return NVML_ERROR_INVALID_ARGUMENT;
  s = malloc(sizeof *s);
  if (!s) return NVML_ERROR_UNKNOWN;
  if (!load_state(s)) { free(s); return NVML_ERROR_DRIVER_NOT_LOADED; }
  rc = injected(s, fn, -1);
  if (s->delay_ms) {
    struct timespec ts = {(time_t)(s->delay_ms / 1000), (long)(s->delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  if (!rc) *count = s->gpu_count;
  free(s);
  return rc;
}
#ifndef FAKE_NVML_V1_ONLY
EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) { return get_count("nvmlDeviceGetCount_v2", count); }
#endif
EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) { return get_count("nvmlDeviceGetCount", count); }

static nvmlReturn_t get_handle(const char *fn, unsigned int index, nvmlDevice_t *out) {
  struct fake_state *s;
  int rc;
  if (!initialized()) return NVML_ERROR_UNINITIALIZED;
  if (!out) return NVML_ERROR_INVALID_ARGUMENT;
  s = malloc(sizeof *s);
  if (!s) return NVML_ERROR_UNKNOWN;
  if (!load_state(s)) { free(s); return NVML_ERROR_DRIVER_NOT_LOADED; }
  rc = injected(s, fn, (int)index);
  if (!rc && index >= s->gpu_count) rc = NVML_ERROR_INVALID_ARGUMENT;
  if (!rc) *out = &devices[index];
  free(s);
  return rc;
}
#ifndef FAKE_NVML_V1_ONLY
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d) {
  return get_handle("nvmlDeviceGetHandleByIndex_v2", i, d);
}
#endif
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int i, nvmlDevice_t *d) {
  return get_handle("nvmlDeviceGetHandleByIndex", i, d);
}

static nvmlReturn_t copy_out(const char *v, int has, char *buf, unsigned int len) {
  if (!has) return NVML_ERROR_NOT_SUPPORTED;
  if (!buf) return NVML_ERROR_INVALID_ARGUMENT;
  if (strlen(v) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
  strcpy(buf, v);
  return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t dev, char *buf, unsigned int len) {
  BEGIN("nvmlDeviceGetName", dev);
  END(copy_out(g->name, g->has_name, buf, len));
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t dev, char *buf, unsigned int len) {
  BEGIN("nvmlDeviceGetUUID", dev);
  END(copy_out(g->uuid, g->has_uuid, buf, len));
}

#ifndef FAKE_NVML_V1_ONLY
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t dev, nvmlPciInfo_t *pci) {
  unsigned int dom = 0, bus = 0, d = 0, fn = 0;
  BEGIN("nvmlDeviceGetPciInfo_v3", dev);
  if (!pci) END(NVML_ERROR_INVALID_ARGUMENT);
  if (!g->has_pci) END(NVML_ERROR_NOT_SUPPORTED);
  memset(pci, 0, sizeof *pci);
  copy_str(pci->busId, sizeof pci->busId, g->pci);
  sscanf(g->pci, "%x:%x:%x.%x", &dom, &bus, &d, &fn);
  snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.%X", dom & 0xffff, bus & 0xff,
           d & 0xff, fn & 0xf);
  pci->domain = dom;
  pci->bus = bus;
  pci->device = d;
  pci->pciDeviceId = 0x233010de;
  END(NVML_SUCCESS);
}
#endif

EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t dev, nvmlUtilization_t *u) {
  BEGIN("nvmlDeviceGetUtilizationRates", dev);
  if (!u) END(NVML_ERROR_INVALID_ARGUMENT);
  if (!g->has_util_gpu || !g->has_util_memory) END(NVML_ERROR_NOT_SUPPORTED);
  u->gpu = (unsigned)g->util_gpu;
  u->memory = (unsigned)g->util_memory;
  END(NVML_SUCCESS);
}

/* The v1 struct has no reserved field: like the real driver, v1 counts reserved memory as used. */
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t dev, nvmlMemory_t *m) {
  unsigned long long used;
  BEGIN("nvmlDeviceGetMemoryInfo", dev);
  if (!m) END(NVML_ERROR_INVALID_ARGUMENT);
  if (!g->has_mem_total) END(NVML_ERROR_NOT_SUPPORTED);
  used = g->mem_used + g->mem_reserved;
  m->total = g->mem_total;
  m->used = used;
  m->free = used > g->mem_total ? 0 : g->mem_total - used;
  END(NVML_SUCCESS);
}

#ifndef FAKE_NVML_V1_ONLY
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t dev, nvmlMemory_v2_t *m) {
  unsigned long long taken;
  BEGIN("nvmlDeviceGetMemoryInfo_v2", dev);
  if (!m) END(NVML_ERROR_INVALID_ARGUMENT);
  if (m->version != nvmlMemory_v2) END(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
  if (!g->has_mem_total) END(NVML_ERROR_NOT_SUPPORTED);
  taken = g->mem_used + g->mem_reserved;
  m->total = g->mem_total;
  m->reserved = g->mem_reserved;
  m->used = g->mem_used;
  m->free = taken > g->mem_total ? 0 : g->mem_total - taken;
  END(NVML_SUCCESS);
}
#endif

EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t dev, int sensor, unsigned int *c) {
  BEGIN("nvmlDeviceGetTemperature", dev);
  if (!c || sensor != 0) END(NVML_ERROR_INVALID_ARGUMENT);
  if (!g->has_temperature) END(NVML_ERROR_NOT_SUPPORTED);
  *c = (unsigned)g->temperature;
  END(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t dev, unsigned int *mw) {
  BEGIN("nvmlDeviceGetPowerUsage", dev);
  if (!mw) END(NVML_ERROR_INVALID_ARGUMENT);
  if (!g->has_power_usage) END(NVML_ERROR_NOT_SUPPORTED);
  *mw = (unsigned)g->power_usage;
  END(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t dev, unsigned int *mw) {
  BEGIN("nvmlDeviceGetEnforcedPowerLimit", dev);
  if (!mw) END(NVML_ERROR_INVALID_ARGUMENT);
  if (!g->has_power_limit) END(NVML_ERROR_NOT_SUPPORTED);
  *mw = (unsigned)g->power_limit;
  END(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetFanSpeed(nvmlDevice_t dev, unsigned int *pct) {
  BEGIN("nvmlDeviceGetFanSpeed", dev);
  if (!pct) END(NVML_ERROR_INVALID_ARGUMENT);
  if (!g->has_fan_speed) END(NVML_ERROR_NOT_SUPPORTED);
  *pct = (unsigned)g->fan_speed;
  END(NVML_SUCCESS);
}

/* 0 graphics and 1 SM both read clock_sm; 2 memory reads clock_mem; 3 video is not modelled. */
EXPORT nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t dev, int type, unsigned int *mhz) {
  BEGIN("nvmlDeviceGetClockInfo", dev);
  if (!mhz || type < 0 || type > 3) END(NVML_ERROR_INVALID_ARGUMENT);
  if ((type == 0 || type == 1) && g->has_clock_sm) { *mhz = (unsigned)g->clock_sm; END(NVML_SUCCESS); }
  if (type == 2 && g->has_clock_mem) { *mhz = (unsigned)g->clock_mem; END(NVML_SUCCESS); }
  END(NVML_ERROR_NOT_SUPPORTED);
}

/* Count-then-fetch: too small a *count gets INSUFFICIENT_SIZE with *count set to what is needed. */
static nvmlReturn_t processes(const char *fn, nvmlDevice_t dev, unsigned int *count, void *infos, int v1) {
  unsigned int j, n;
  BEGIN(fn, dev);
  if (!count) END(NVML_ERROR_INVALID_ARGUMENT);
  n = g->process_count;
  if (*count < n) { *count = n; END(NVML_ERROR_INSUFFICIENT_SIZE); }
  if (n && !infos) END(NVML_ERROR_INVALID_ARGUMENT);
  for (j = 0; j < n; j++) {
    if (v1) {
      nvmlProcessInfo_v1_t *p = (nvmlProcessInfo_v1_t *)infos + j;
      p->pid = g->procs[j].pid;
      p->usedGpuMemory = g->procs[j].used;
    } else {
      nvmlProcessInfo_t *p = (nvmlProcessInfo_t *)infos + j;
      p->pid = g->procs[j].pid;
      p->usedGpuMemory = g->procs[j].used;
      p->gpuInstanceId = 0xFFFFFFFFu;
      p->computeInstanceId = 0xFFFFFFFFu;
    }
  }
  *count = n;
  END(NVML_SUCCESS);
}

#ifndef FAKE_NVML_V1_ONLY
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *c, nvmlProcessInfo_t *p) {
  return processes("nvmlDeviceGetComputeRunningProcesses_v3", d, c, p, 0);
}
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t d, unsigned int *c, nvmlProcessInfo_t *p) {
  return processes("nvmlDeviceGetComputeRunningProcesses_v2", d, c, p, 0);
}
#endif
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t d, unsigned int *c, nvmlProcessInfo_v1_t *p) {
  return processes("nvmlDeviceGetComputeRunningProcesses", d, c, p, 1);
}
