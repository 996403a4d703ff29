def hello():
    return "hello from setup.py"
