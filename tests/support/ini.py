"""Write mailq ini files for tests."""
import configparser


def write_ini(path, sections):
    """Write {section: {key: value}} to path and return path."""
    cp = configparser.ConfigParser(interpolation=None)
    for name, values in sections.items():
        cp[name] = {k: str(v) for k, v in values.items()}
    with open(path, 'w') as fh:
        cp.write(fh)
    return path
