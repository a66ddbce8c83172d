"""The ``calculator`` tool: arithmetic evaluated by walking an allow-list of syntax.

The expression is parsed with :mod:`ast` and only numbers, the arithmetic operators, a few
constants and a table of math functions are evaluated; names, attributes, subscripts,
strings, calls of anything else and every other construct are refused before anything
runs (``eval`` is never used). Sizes are bounded before each operation, so ``9**9**9``,
``factorial(10**6)`` or a million-digit product is refused instead of eating the server.
"""

import ast
import math
import operator

from hermes_web.runs.tools import ToolError

MAX_EXPRESSION_CHARS = 1000
MAX_NODES = 300
# Integers stay below this many bits (about 3000 decimal digits).
MAX_INT_BITS = 10_000
# Arguments of factorial, comb and perm (1000! has 2568 digits).
MAX_COMBINATORIC_ARGUMENT = 1000
MAX_ROUND_DIGITS = 100
# Integers this large are answered as strings: JSON readers lose precision past 2**53.
MAX_EXACT_JSON_INT = 2**53

CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf}


def _checked_int(value):
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError(f"the result has more than {MAX_INT_BITS} bits")
    return value


def _power(base, exponent):
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if exponent * math.log2(abs(base)) >= MAX_INT_BITS:
            raise ToolError(f"{base}**{exponent} would have more than {MAX_INT_BITS} bits")
    return _checked_int(operator.pow(base, exponent))


def _multiply(left, right):
    if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
        raise ToolError(f"the product would have more than {MAX_INT_BITS} bits")
    return operator.mul(left, right)


def _combinatoric(function):
    def bounded(*args):
        if any(isinstance(arg, int) and abs(arg) > MAX_COMBINATORIC_ARGUMENT for arg in args):
            raise ToolError(f"{function.__name__} takes integers up to {MAX_COMBINATORIC_ARGUMENT}")
        return function(*args)

    return bounded


def _round(value, digits=0):
    if not isinstance(digits, int) or abs(digits) > MAX_ROUND_DIGITS:
        raise ToolError(f"round takes a whole number of digits up to {MAX_ROUND_DIGITS}")
    return round(value, digits) if digits else round(value)


def _pow(base, exponent, modulus=None):
    if modulus is None:
        return _power(base, exponent)
    if not all(isinstance(value, int) for value in (base, exponent, modulus)):
        raise ToolError("pow with a modulus takes integers")
    return pow(base, exponent, modulus)


BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: _multiply,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
}
UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
# name -> (function, fewest arguments, most arguments or None for any number)
FUNCTIONS = {
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "min": (min, 1, None),
    "max": (max, 1, None),
    "sqrt": (math.sqrt, 1, 1),
    "exp": (math.exp, 1, 1),
    "log": (math.log, 1, 2),
    "log10": (math.log10, 1, 1),
    "log2": (math.log2, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "asin": (math.asin, 1, 1),
    "acos": (math.acos, 1, 1),
    "atan": (math.atan, 1, 1),
    "atan2": (math.atan2, 2, 2),
    "sinh": (math.sinh, 1, 1),
    "cosh": (math.cosh, 1, 1),
    "tanh": (math.tanh, 1, 1),
    "degrees": (math.degrees, 1, 1),
    "radians": (math.radians, 1, 1),
    "hypot": (math.hypot, 1, None),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "gcd": (math.gcd, 1, None),
    "factorial": (_combinatoric(math.factorial), 1, 1),
    "comb": (_combinatoric(math.comb), 2, 2),
    "perm": (_combinatoric(math.perm), 1, 2),
    "pow": (_pow, 2, 3),
}


def evaluate(expression: str):
    """The value of an arithmetic expression; ToolError says what is not allowed or wrong."""
    if not isinstance(expression, str) or not expression.strip():
        raise ToolError("expression must be a non-empty string")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as error:
        raise ToolError(f"not an arithmetic expression: {error.msg}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ToolError(f"expression has more than {MAX_NODES} parts")
    try:
        value = _evaluate(tree.body)
    except ToolError:
        raise
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("the result is too large") from None
    except (ValueError, TypeError) as error:
        raise ToolError(f"cannot compute that: {error}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("the result is not a finite number")
    return value


def _evaluate(node):
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ToolError(f"only numbers are allowed, not {node.value!r}")
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        return BINARY[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise ToolError(f"unknown name {node.id!r} (constants: {', '.join(CONSTANTS)})")
    if isinstance(node, ast.Call):
        return _call(node)
    raise ToolError(f"{type(node).__name__} is not allowed in an arithmetic expression")


def _call(node: ast.Call):
    if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
        raise ToolError(f"unknown function (available: {', '.join(FUNCTIONS)})")
    if node.keywords:
        raise ToolError("functions take positional arguments only")
    function, fewest, most = FUNCTIONS[node.func.id]
    if len(node.args) < fewest or (most is not None and len(node.args) > most):
        raise ToolError(f"{node.func.id} takes {fewest if fewest == most else f'{fewest} or more'} argument(s)")
    args = [_evaluate(arg) for arg in node.args]
    return _checked_int(function(*args))


class Calculator:
    name = "calculator"
    description = (
        "Evaluate an arithmetic expression exactly and return its value. Supports + - * / // % **, "
        "parentheses, the constants pi, e, tau and the functions " + ", ".join(FUNCTIONS) + "."
    )
    parameters = {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "for example (3.5 + 2) * sqrt(16) / 3"}},
        "required": ["expression"],
        "additionalProperties": False,
    }

    def run(self, args: dict, context) -> dict:
        expression = args.get("expression")
        value = evaluate(expression)
        if isinstance(value, int) and abs(value) >= MAX_EXACT_JSON_INT:
            value = str(value)
        return {"expression": expression.strip(), "result": value}
