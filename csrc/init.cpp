// The extension module circuits_vision._C. Its only job as a Python module is to
// exist: importing it runs the TORCH_LIBRARY registrations of every op in ops/.
#include <Python.h>

static struct PyModuleDef circuits_vision_C_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) {
  return PyModule_Create(&circuits_vision_C_module);
}
