"""A numba cache locator that finds no folder, as where neither the install nor the home is writable."""


class NoCacheFolder:
    @classmethod
    def from_function(cls, py_func, py_file):
        return None
