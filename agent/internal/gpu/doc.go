// Package gpu reads GPU inventory, utilisation and health behind the narrow
// Backend interface.
//
// NVML is the implementation for real hosts. It is written against go-nvml's
// nvml.Interface, so go-nvml's mocks (the eight-GPU DGX A100 server and
// hand-built devices) run the same code in tests and simulations.
//
// Guarantees:
//   - A host without the NVIDIA driver runs with zero GPUs: OpenDriver logs
//     the reason once and returns None. nvml.Shutdown is called only after a
//     successful nvml.Init, because go-nvml resolves NVML's symbols in Init
//     and a Shutdown without them aborts the process.
//   - A field the driver does not support (ERROR_NOT_SUPPORTED) is left nil
//     in the status; the GPU is kept.
//   - One failing GPU never stops the others: a GPU whose handle or UUID
//     cannot be read at start is left out of the inventory with a warning,
//     and errors while sampling affect only that GPU's fields.
//   - A GPU is unhealthy, with a reason, after a critical XID event, a
//     double-bit ECC event, new uncorrectable ECC errors, ERROR_GPU_IS_LOST,
//     pending retired pages or a failed row remapping. XIDs 13, 31, 43, 45,
//     68 and 109 are usually caused by an application and are ignored.
//   - Health is not sticky: once no fault has been seen for the recovery
//     period, the GPU is healthy again. Its last fault and when it happened
//     stay in its status.
//
// Not guaranteed: a GPU added or removed while the agent runs is seen only
// after a restart, because the inventory is read once in OpenNVML.
package gpu
