"""The conventions written into ``manifest.json``, in words, so the files stand on their own."""

from __future__ import annotations

FORMAT = "geomp-ref-golden"
FORMAT_VERSION = 1

CONVENTIONS = {
    "edge_direction": (
        "graph/edge_index has shape (2, E): row 0 is the sender j (source), row 1 the receiver "
        "i (destination). Messages flow from sender to receiver and are summed at the receiver "
        "(PyTorch Geometric's source_to_target flow). Relative vectors are x_j - x_i "
        "(sender minus receiver)."),
    "batching": (
        "graph/batch has shape (N,) and holds the non-decreasing graph id of every node; "
        "graph/num_nodes and graph/num_graphs are stored explicitly (0-d integers), so "
        "isolated nodes and empty graphs are kept. Graph-free blocks have no graph/ keys and "
        "their forward takes no graph."),
    "array_layouts": (
        "Node arrays are (N, ...), edge arrays (E, ...) in the column order of edge_index, "
        "per-graph arrays (B, ...). Dense weights are stored (in, out): y = x @ W + b. A "
        "block's params are a tree of dicts; params/<path> joins the keys with '/', a child "
        "block's params sit under the child's field name and a stack of children under "
        "layers/0, layers/1, ..."),
    "irreps": (
        "Features of kind irreps:<irreps> use e3nn's layout (e3nn >= 0.5): the blocks "
        "'mul x l p' in the order written, each block multiplicity-major (index "
        "u*(2l+1) + (m+l) for copy u and order m = -l..l). Real spherical-harmonic basis "
        "with polar axis +y; the l = 1 components are (x, y, z). Irreps.sort orders blocks by "
        "(l, p), so an odd irrep precedes the even one at equal l (0o < 0e < 1o < 1e). "
        "Parity letters: e = +1, o = -1. Coupling tensors are the Condon-Shortley "
        "Clebsch-Gordan coefficients moved to this real basis and scaled to Frobenius norm 1."),
    "rotations": (
        "Active, right-handed rotation matrices acting on column vectors; point arrays "
        "transform as x -> x Q^T + t. Euler angles are e3nn's Y-X-Y: R(alpha, beta, gamma) = "
        "R_y(alpha) R_x(beta) R_y(gamma), gamma applied first. Irreps features transform as "
        "x -> x D(Q)^T with D^(l,p)(Q) = p^((1 - det Q)/2) D^l(det(Q) Q)."),
    "lie_groups": (
        "Poses (kind 'pose') are homogeneous matrices [[R, t], [0, 1]] of shape (N, D+1, D+1); "
        "the group acts on them from the left, g -> T g. Tangent (Lie-algebra) coordinates put "
        "the translation first: SE(2) (rho_1, rho_2, theta), SE(3) (rho, omega); perturbations "
        "act on the right, X Exp(tau); logarithms are principal. Gradients with respect to "
        "pose inputs are ambient: derivatives with respect to the matrix entries."),
    "vjp": (
        "cotangents/<k> holds the cotangent of output k; grad_params/<path> and "
        "grad_inputs/<name> are the gradients of sum_k <cotangents/k, outputs/k> (a "
        "vector-Jacobian product). Inputs that are None or not differentiable (integer labels) "
        "have no grad_inputs key."),
    "symmetry_record": (
        "symmetry/Q (D, D) orthogonal and symmetry/t (D,) are one element of the case's group; "
        "symmetry/inputs/<name> are the inputs transformed by it (each according to its input "
        "kind; the graph is unchanged) and symmetry/outputs/<k> are the outputs transformed "
        "by it (each according to its output kind). Running the block on the transformed "
        "inputs with the same params must give the transformed outputs, to the case's "
        "sym_atol relative to the largest |output|. Kinds: node_scalar, node_label, "
        "edge_scalar, graph_scalar, graph_invariant: unchanged; position: x Q^T + t; vector, "
        "edge_vector, graph_vector: x Q^T; irreps:<r> and edge_irreps:<r>: x D(Q)^T; pose: "
        "T g with T = [[Q, t], [0, 1]]; grid:<name>: the grid axis (axis 1) permuted by the "
        "rotation, exact for rotations of the grid's own group; stabiliser:SE2: angle + the "
        "rotation angle of Q; stabiliser:SE3: Log(Q Exp(x))."),
}

DTYPES = (
    "Real arrays are float64 ('<f8'). Integer arrays keep an integer dtype ('<i8', int64): "
    "graph/edge_index, graph/batch, graph/num_nodes, graph/num_graphs and integer inputs "
    "such as node labels (atomic numbers). Boolean inputs, if any, are stored as bool.")

PROBLEMS = (
    "Each case has a 'random' problem (a random valid problem of 7 nodes from the case's own "
    "generator; graph blocks get a batch of two graphs) and, when the case can be built on a "
    "shipped real molecule, a 'molecule' problem on the G2 geometry of ethanol (CH3CH2OH). "
    "Each problem is one .npz file; the case's 'file' and 'sha256' are those of the random "
    "problem and 'problems' lists every problem with its own file and hash.")

KEYS = (
    "graph/edge_index, graph/num_nodes, graph/batch, graph/num_graphs (graph blocks only); "
    "inputs/<name> (forward arguments after params and graph, named as in the forward; a "
    "None input has no key and is listed in 'none_inputs'); params/<path>; outputs/<k>; "
    "cotangents/<k>; grad_params/<path>; grad_inputs/<name>; symmetry/Q, symmetry/t, "
    "symmetry/inputs/<name>, symmetry/outputs/<k>. 'output_is_tuple' says whether the "
    "forward returns a tuple (outputs 0..num_outputs-1) or a single array (outputs/0). "
    "'empty_param_subtrees' lists params paths that hold an empty dict (no array key).")

TOLERANCES = (
    "Outputs are reproduced bit for bit by this library on the platform that wrote them; "
    "other implementations in float64 should agree to about 1e-12 relative to the largest "
    "|output| (accumulation order differs). VJPs: 1e-12 relative to the largest |gradient| "
    "of each array. Symmetry: the case's sym_atol.")
